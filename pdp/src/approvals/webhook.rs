//! Telling reviewers: each configured webhook gets a POST per new approval,
//! a generic JSON document or a Slack-compatible incoming-webhook message,
//! retried with exponential backoff. A delivery that fails every attempt is
//! logged and kept on the approval (`notification_failures`), which the agent
//! puts on the session's audit trail.

use std::sync::Arc;
use std::time::Duration;

use humantime_serde::re::humantime;
use palisade_proto::v1 as pb;
use serde::Deserialize;
use serde_json::json;

use super::ApprovalStore;
use super::transition::{self, time_of};

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// A JSON document with every field (see the README).
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` and `blocks`).
    Slack,
}

/// One webhook (`[[approvals.webhooks]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Attempts before giving up. Default 5.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry; doubled after each. Default 500ms.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Bound of one attempt. Default 5s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Sends approvals to the configured webhooks.
#[derive(Clone)]
pub struct Notifier {
    hooks: Arc<Vec<WebhookConfig>>,
    client: Option<reqwest::Client>,
    store: Arc<dyn ApprovalStore>,
    /// How reviewers reach this PDP, for the commands in the message.
    pdp_url: Option<String>,
}

impl Notifier {
    /// A notifier for `hooks`; failures are recorded in `store`.
    pub fn new(
        hooks: Vec<WebhookConfig>,
        store: Arc<dyn ApprovalStore>,
        pdp_url: Option<String>,
    ) -> Self {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = if hooks.is_empty() {
            None
        } else {
            match reqwest::Client::builder()
                .use_rustls_tls()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("palisade-pdp/", env!("CARGO_PKG_VERSION")))
                .build()
            {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "webhook client could not be built; approvals will not be announced");
                    None
                }
            }
        };
        Self {
            hooks: Arc::new(hooks),
            client,
            store,
            pdp_url,
        }
    }

    /// Announces a new approval on every webhook, in the background.
    pub fn announce(&self, approval: &pb::Approval) {
        let Some(client) = &self.client else {
            return;
        };
        for hook in self.hooks.iter() {
            let body = match hook.format {
                WebhookFormat::Json => json_payload(approval, self.pdp_url.as_deref()),
                WebhookFormat::Slack => slack_payload(approval, self.pdp_url.as_deref()),
            };
            let (client, hook, store, id) = (
                client.clone(),
                hook.clone(),
                self.store.clone(),
                approval.id.clone(),
            );
            tokio::spawn(async move {
                if let Err(failure) = deliver(&client, &hook, &body).await {
                    tracing::warn!(approval = %id, url = %hook.url, error = %failure, "webhook delivery failed");
                    let text = format!("webhook {}: {failure}", hook.url);
                    if let Err(e) = store
                        .update(&id, &|a| transition::notification_failed(a, &text))
                        .await
                    {
                        tracing::warn!(approval = %id, error = %e, "webhook failure could not be recorded");
                    }
                }
            });
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    body: &serde_json::Value,
) -> Result<(), String> {
    let mut wait = hook.backoff;
    let mut last = String::new();
    let attempts = hook.attempts.max(1);
    for attempt in 1..=attempts {
        let result = client
            .post(&hook.url)
            .timeout(hook.timeout)
            .json(body)
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                last = text;
            }
        }
        if attempt < attempts {
            tracing::debug!(url = %hook.url, attempt, error = %last, "webhook attempt failed; retrying");
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
    Err(format!("{last} (after {attempts} attempts)"))
}

fn pdp_flag(pdp_url: Option<&str>) -> String {
    pdp_url.map(|u| format!(" --pdp {u}")).unwrap_or_default()
}

/// The commands a reviewer runs.
pub fn commands(approval: &pb::Approval, pdp_url: Option<&str>) -> (String, String) {
    let flag = pdp_flag(pdp_url);
    (
        format!("palisade approvals approve {}{flag}", approval.id),
        format!(
            "palisade approvals deny {}{flag} --reason \"...\"",
            approval.id
        ),
    )
}

fn deadline_text(approval: &pb::Approval) -> String {
    humantime::format_rfc3339_seconds(time_of(approval.deadline.as_ref())).to_string()
}

/// The generic JSON document.
pub fn json_payload(approval: &pb::Approval, pdp_url: Option<&str>) -> serde_json::Value {
    let principal = approval.requester.clone().unwrap_or_default();
    let (approve, deny) = commands(approval, pdp_url);
    let claim = |k: &str| principal.claims.get(k).cloned().unwrap_or_default();
    json!({
        "event": "approval_requested",
        "approval_id": approval.id,
        "session_id": approval.session_id,
        "statement": approval.statement,
        "principal": {
            "id": principal.id,
            "subject": principal.subject,
            "groups": principal.groups,
        },
        "ci": {
            "repository": claim("repository"),
            "sha": claim("sha"),
            "run_id": claim("run_id"),
            "ref": claim("ref"),
        },
        "target": approval.target,
        "policies": approval.policies,
        "reason": approval.policy_reason,
        "reviewers": approval.reviewers,
        "deadline": deadline_text(approval),
        "commands": { "approve": approve, "deny": deny },
    })
}

/// A Slack incoming-webhook message.
pub fn slack_payload(approval: &pb::Approval, pdp_url: Option<&str>) -> serde_json::Value {
    let principal = approval.requester.clone().unwrap_or_default();
    let (approve, deny) = commands(approval, pdp_url);
    let mut ci = Vec::new();
    for key in ["repository", "sha", "run_id"] {
        if let Some(v) = principal.claims.get(key) {
            ci.push(format!("{key} `{v}`"));
        }
    }
    let summary = format!(
        "Palisade: a statement on `{}` by {} needs the approval of {} (until {})",
        approval.target,
        principal.id,
        approval.reviewers.join(", "),
        deadline_text(approval)
    );
    let details = format!(
        "*Statement*\n```{}```\n*Principal* {}\n*CI* {}\n*Target* `{}`\n*Policy* {} — {}\n*Approval* `{}`\nApprove: `{approve}`\nDeny: `{deny}`",
        approval.statement,
        principal.id,
        if ci.is_empty() {
            "none".to_owned()
        } else {
            ci.join(", ")
        },
        approval.target,
        approval.policies.join(", "),
        approval.policy_reason,
        approval.id,
    );
    json!({
        "text": summary,
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": summary } },
            { "type": "section", "text": { "type": "mrkdwn", "text": details } },
        ],
    })
}
