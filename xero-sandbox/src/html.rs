//! The consent page ("Allow access") and the identity error page.

use axum::response::Html;
use uuid::Uuid;

/// Escapes text for HTML.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:36rem;margin:3rem auto;color:#1e3145}\
button{padding:.6rem 1.4rem;margin-right:.8rem;border-radius:4px;border:1px solid #13b5ea}\
button.allow{background:#13b5ea;color:#fff}li{margin:.3rem 0}";

/// The approve page: the app, the scopes it asks for, the organisations to
/// connect (all ticked), and Allow / Cancel buttons posting back.
pub(crate) fn approve_page(
    nonce: &str,
    client_id: &str,
    scopes: &[String],
    orgs: &[(Uuid, String)],
) -> Html<String> {
    let scopes: String = scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let orgs: String = orgs
        .iter()
        .map(|(id, name)| {
            format!(
                "<li><label><input type=\"checkbox\" name=\"tenant\" value=\"{id}\" checked> {}</label></li>",
                escape(name)
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Xero sandbox: allow access</title><style>{STYLE}</style></head>\
<body><h1>Allow access</h1><p>The app <strong>{}</strong> wants access to:</p><ul>{scopes}</ul>\
<form method=\"post\" action=\"/identity/connect/authorize\"><input type=\"hidden\" name=\"nonce\" value=\"{}\">\
<p>Organisations:</p><ul>{orgs}</ul>\
<button class=\"allow\" type=\"submit\" name=\"action\" value=\"allow\">Allow access</button>\
<button type=\"submit\" name=\"action\" value=\"deny\">Cancel</button></form>\
<p><small>This is the local Xero sandbox.</small></p></body></html>",
        escape(client_id),
        escape(nonce)
    ))
}

/// An error page (never a redirect to an untrusted URI).
pub(crate) fn error_page(message: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Xero sandbox: error</title><style>{STYLE}</style></head>\
<body><h1>Sorry, something went wrong</h1><p>{}</p></body></html>",
        escape(message)
    ))
}
