//! The Slack message of an alert: the facts a responder needs first, with
//! every text from the container made inert as Slack markup.
use serde_json::{Value, json};

use super::format::text;

/// Longest text of one Slack field, in characters, before it is cut with `…`
/// (Slack refuses a section field over 2000 characters and a message text
/// over 40000; argv and paths are the container's to choose).
pub const SLACK_FIELD_CHARS: usize = 300;
/// Longest summary in a Slack message.
pub const SLACK_SUMMARY_CHARS: usize = 1000;

/// Text from the alert made inert for Slack mrkdwn: `&`, `<` and `>` become
/// the entities Slack documents (so `<!channel>`, `<@U1>` and `<url|label>`
/// are shown, not acted on), control characters (newlines included, which
/// could fake extra fields) become `\u{..}` escapes, and the result is cut
/// at `max` characters. `*`, `_`, `~` and backticks are kept: at worst they
/// style a word, and a path copied out of the message stays the real path.
pub fn slack_escape(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 2));
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A readable Slack message: a one-line `text` (notifications, fallbacks) and
/// blocks with the facts a responder needs first.
pub fn slack_message(a: &Value) -> Value {
    let field = |path: &[&str], default: &str| {
        slack_escape(text(a, path).unwrap_or(default), SLACK_FIELD_CHARS)
    };
    let raw_sev = text(a, &["severity"]).unwrap_or("unknown");
    let sev = field(&["severity"], "unknown");
    let rule = field(&["rule"], "unknown");
    let summary = slack_escape(text(a, &["summary"]).unwrap_or(""), SLACK_SUMMARY_CHARS);
    let host = field(&["host"], "unknown");
    let icon = match raw_sev {
        "critical" => ":red_circle:",
        "high" => ":large_orange_circle:",
        "medium" => ":large_yellow_circle:",
        _ => ":large_blue_circle:",
    };
    let container = match (
        text(a, &["container", "name"]),
        text(a, &["container", "id"]),
    ) {
        (Some(n), _) => n.to_owned(),
        (None, Some(id)) => id.chars().take(12).collect(),
        (None, None) => "host".to_owned(),
    };
    let mut where_ = container.clone();
    if let (Some(ns), Some(pod)) = (
        text(a, &["container", "namespace"]),
        text(a, &["container", "pod"]),
    ) {
        where_ = format!("{ns}/{pod} ({container})");
    }
    let where_ = slack_escape(&where_, SLACK_FIELD_CHARS);
    let process = match (text(a, &["process", "exe"]), a.pointer("/process/pid")) {
        (Some(exe), Some(pid)) => format!("{exe} (pid {pid})"),
        (None, Some(pid)) => format!("pid {pid}"),
        _ => "-".to_owned(),
    };
    let process = slack_escape(&process, SLACK_FIELD_CHARS);
    let count = a.get("count").and_then(Value::as_u64).unwrap_or(1);
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{sev}")}),
        json!({"type": "mrkdwn", "text": format!("*Rule*\n{rule}")}),
        json!({"type": "mrkdwn", "text": format!("*Where*\n{where_}")}),
        json!({"type": "mrkdwn", "text": format!("*Host*\n{host}")}),
        json!({"type": "mrkdwn", "text": format!("*Process*\n{process}")}),
    ];
    if count > 1 {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Count*\n{count}")}));
    }
    json!({
        "text": format!("{icon} [{}] {rule} on {host}: {summary}", sev.to_uppercase()),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} *{}* {rule}\n{summary}", sev.to_uppercase())}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "{} · alert {}",
                field(&["time"], ""),
                field(&["id"], "")
            )}]}
        ]
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A container chooses its argv, paths and names: none of it may become
    /// Slack markup (mentions, links, formatting, extra lines) or exceed a cap.
    #[test]
    fn slack_message_is_inert_and_capped() {
        let evil = "/tmp/x <!channel> <https://evil.example|click> &amp; *bold* _i_ ~s~ `c`\n*Severity*\ncritical";
        let a = json!({
            "id": "0193", "time": "2026-11-29T15:50:00Z", "host": "node-1",
            "rule": "unexpected-process", "severity": "high", "kind": "process",
            "summary": format!("unexpected process {evil}"),
            "container": {"id": "3f9c", "name": "<!here>", "pod": "p\u{7}", "namespace": "n\r"},
            "process": {"pid": 4242, "exe": format!("{evil}{}", "A".repeat(5000))},
        });
        let s = slack_message(&a);
        let mut texts = vec![s["text"].as_str().unwrap().to_owned()];
        texts.push(s["blocks"][0]["text"]["text"].as_str().unwrap().to_owned());
        for f in s["blocks"][1]["fields"].as_array().unwrap() {
            texts.push(f["text"].as_str().unwrap().to_owned());
        }
        for t in &texts {
            // What remains of the payload is text: no angle brackets, no raw
            // `&` that is not an entity, no line past the label's own.
            assert!(!t.contains('<') && !t.contains('>'), "{t}");
            for (i, _) in t.match_indices('&') {
                let rest = &t[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;"]
                        .iter()
                        .any(|e| rest.starts_with(e)),
                    "bare & in {t}"
                );
            }
            assert!(t.matches('\n').count() <= 1, "{t}");
            assert!(!t.contains('\r') && !t.contains('\u{7}'), "{t}");
            assert!(
                t.chars().count() <= SLACK_SUMMARY_CHARS + 100,
                "{} chars",
                t.chars().count()
            );
        }
        let process = &texts[6];
        assert!(
            process.starts_with("*Process*\n/tmp/x &lt;!channel&gt;"),
            "{process}"
        );
        assert!(process.ends_with('…'), "capped: {process}");
        // The fake field stays on the process's own line.
        assert!(
            process.contains("`c`\\u{a}*Severity*\\u{a}critical"),
            "{process}"
        );
        assert!(texts[4].contains("&lt;!here&gt;"), "{}", texts[4]);
        assert_eq!(slack_escape("a&b", 10), "a&amp;b");
        assert_eq!(slack_escape("abcdef", 3), "abc…");
    }
}
