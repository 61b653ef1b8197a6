// Security keys (WebAuthn): forms marked data-webauthn="create" or "get" ask the browser,
// put its answer in the form's hidden field "antwoord", and submit the form as usual.
"use strict";
(function () {
  function bytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }
  function text(buffer) {
    var raw = "", view = new Uint8Array(buffer);
    for (var i = 0; i < view.length; i++) { raw += String.fromCharCode(view[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function answer(credential) {
    var r = credential.response, out = {
      id: credential.id, rawId: text(credential.rawId), type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(), response: {
        clientDataJSON: text(r.clientDataJSON)
      }
    };
    if (r.attestationObject) {
      out.response.attestationObject = text(r.attestationObject);
      if (r.getTransports) { out.response.transports = r.getTransports(); }
    } else {
      out.response.authenticatorData = text(r.authenticatorData);
      out.response.signature = text(r.signature);
      if (r.userHandle) { out.response.userHandle = text(r.userHandle); }
    }
    return JSON.stringify(out);
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var mode = form.getAttribute("data-webauthn");
    if (!mode || !window.PublicKeyCredential || form.elements.antwoord.value) { return; }
    event.preventDefault();
    var options = JSON.parse(form.getAttribute("data-options"));
    options.challenge = bytes(options.challenge);
    (options.allowCredentials || []).concat(options.excludeCredentials || []).forEach(function (c) {
      c.id = bytes(c.id);
    });
    var asked;
    if (mode === "create") {
      options.user.id = bytes(options.user.id);
      asked = navigator.credentials.create({ publicKey: options });
    } else {
      asked = navigator.credentials.get({ publicKey: options });
    }
    asked.then(function (credential) {
      form.elements.antwoord.value = answer(credential);
      form.submit();
    }, function () {
      form.elements.antwoord.value = "-";
      form.submit();
    });
  });
})();
