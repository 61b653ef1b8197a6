"""Write tests/vectors/*.json from the committed generators beside this file.

Run with ``make vectors``. Every generator is deterministic (fixed seeds, a
fixed random stream and fixed times), so running it again gives the same
files, except where a primitive draws its own randomness (HPKE encapsulation):
those vectors are checked in the opening direction only. Another
implementation of Schakel can test itself against these files.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATORS = {
    "pseudonyms": "gen_pseudonyms",
    "envelope": "gen_envelope",
    "oprf_split": "gen_oprf_split",
    "certificates": "gen_certificates",
    "witness": "gen_witness",
    "auditlog": "gen_auditlog",
}


def main() -> None:
    sys.path.insert(0, str(HERE))
    for name, module in GENERATORS.items():
        data = importlib.import_module(module).generate()
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(HERE.parents[1])}")


if __name__ == "__main__":
    main()
