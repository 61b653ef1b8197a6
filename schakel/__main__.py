from schakel.cli import main

main()
