//! `monitor health`: asks a running agent's health endpoint, for the
//! container image's HEALTHCHECK (the image has no curl). In the library so
//! the binary only prints the answer and picks the exit code.
use std::time::Duration;

use anyhow::Context as _;

/// What the endpoint said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// A 2xx status.
    pub healthy: bool,
    /// `STATUS BODY`, or `unreachable: WHY`: the line to print.
    pub line: String,
}

/// GETs `url` (no proxy: the agent is local) within `timeout`.
pub async fn ask(url: &str, timeout: Duration) -> anyhow::Result<Answer> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    Ok(match client.get(url).send().await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Answer {
                healthy: status.is_success(),
                line: format!("{} {}", status.as_u16(), body.trim()),
            }
        }
        Err(e) => Answer {
            healthy: false,
            line: format!("unreachable: {e}"),
        },
    })
}
