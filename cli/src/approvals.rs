//! `palisade approvals list|show|approve|deny`: reviewing held statements
//! with the reviewer's own OIDC token (mutual TLS to the PDP as for every
//! other command; the token says who reviews).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use palisade_proto::v1 as pb;
use pb::approval_service_client::ApprovalServiceClient;

use crate::remote::PdpArgs;

/// The subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ApprovalsCommand {
    /// List approvals (pending ones unless --all or --state).
    List(ListArgs),
    /// Show one approval.
    Show(ShowArgs),
    /// Approve a held statement: it runs once, in its session.
    Approve(DecideArgs),
    /// Deny a held statement: the client gets an error naming you and your reason.
    Deny(DecideArgs),
}

/// The reviewer's token.
#[derive(clap::Args, Debug)]
pub struct TokenArg {
    /// The reviewer's OIDC token.
    #[arg(long, env = "PALISADE_TOKEN", hide_env_values = true)]
    token: String,
}

/// Arguments of `approvals list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pdp: PdpArgs,
    #[command(flatten)]
    token: TokenArg,
    /// Every approval, whatever its state.
    #[arg(long)]
    all: bool,
    /// Only these states (pending, approved, denied, expired, withdrawn, consumed).
    #[arg(long, value_delimiter = ',')]
    state: Vec<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `approvals show`.
#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pdp: PdpArgs,
    #[command(flatten)]
    token: TokenArg,
    /// The approval id.
    id: String,
}

/// Arguments of `approvals approve|deny`.
#[derive(clap::Args, Debug)]
pub struct DecideArgs {
    #[command(flatten)]
    pdp: PdpArgs,
    #[command(flatten)]
    token: TokenArg,
    /// The approval id.
    id: String,
    /// Why (shown to the client and kept on the audit trail).
    #[arg(long, default_value = "")]
    reason: String,
}

/// The states' names are the PDP's own, so the CLI prints and parses what
/// the PDP's messages say.
pub use palisade_pdp::approvals::state_name;

/// The states `--state` accepts (every one but `Unspecified`), by the name
/// [`state_name`] gives them.
fn state_of(name: &str) -> anyhow::Result<pb::ApprovalState> {
    [
        pb::ApprovalState::Pending,
        pb::ApprovalState::Approved,
        pb::ApprovalState::Denied,
        pb::ApprovalState::Expired,
        pb::ApprovalState::Withdrawn,
        pb::ApprovalState::Consumed,
    ]
    .into_iter()
    .find(|s| state_name(*s) == name)
    .ok_or_else(|| anyhow::anyhow!("unknown state `{name}`"))
}

fn time(t: Option<&prost_types::Timestamp>) -> String {
    match t {
        Some(t) if t.seconds > 0 => humantime::format_rfc3339_seconds(
            UNIX_EPOCH + Duration::from_secs(t.seconds.unsigned_abs()),
        )
        .to_string(),
        _ => "-".to_owned(),
    }
}

fn status_error(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", e.message(), e.code())
}

async fn client(pdp: &PdpArgs) -> anyhow::Result<ApprovalServiceClient<tonic::transport::Channel>> {
    Ok(ApprovalServiceClient::new(pdp.channel().await?))
}

/// `approvals list`.
pub async fn list(args: &ListArgs) -> anyhow::Result<()> {
    let states: Vec<i32> = if args.all {
        Vec::new()
    } else if args.state.is_empty() {
        vec![pb::ApprovalState::Pending as i32]
    } else {
        args.state
            .iter()
            .map(|s| state_of(s).map(|s| s as i32))
            .collect::<anyhow::Result<_>>()?
    };
    let response = client(&args.pdp)
        .await?
        .list_approvals(pb::ListApprovalsRequest {
            states,
            reviewer_token: args.token.token.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if args.json {
        for a in &response.approvals {
            println!("{}", json(a));
        }
        return Ok(());
    }
    if response.approvals.is_empty() {
        println!("no approvals");
        return Ok(());
    }
    println!(
        "{:<36}  {:<9}  {:<20}  {:<10}  {:<30}  statement",
        "id", "state", "deadline", "target", "requester"
    );
    for a in &response.approvals {
        println!(
            "{:<36}  {:<9}  {:<20}  {:<10}  {:<30}  {}",
            a.id,
            state_name(a.state()),
            time(a.deadline.as_ref()),
            a.target,
            a.requester.as_ref().map(|p| p.id.as_str()).unwrap_or(""),
            a.statement.replace('\n', " ")
        );
    }
    Ok(())
}

fn json(a: &pb::Approval) -> serde_json::Value {
    let p = a.requester.clone().unwrap_or_default();
    serde_json::json!({
        "id": a.id,
        "state": state_name(a.state()),
        "session_id": a.session_id,
        "requester": p.id,
        "claims": p.claims,
        "target": a.target,
        "statement": a.statement,
        "reviewers": a.reviewers,
        "policies": a.policies,
        "policy_reason": a.policy_reason,
        "decided_by": a.decided_by,
        "reason": a.reason,
        "created": time(a.created.as_ref()),
        "deadline": time(a.deadline.as_ref()),
        "decided": time(a.decided.as_ref()),
        "notification_failures": a.notification_failures,
    })
}

/// A multi-line description of an approval.
pub fn describe(a: &pb::Approval) -> String {
    let p = a.requester.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "approval   {}", a.id);
    let _ = writeln!(out, "state      {}", state_name(a.state()));
    let _ = writeln!(out, "statement  {}", a.statement);
    let _ = writeln!(out, "requester  {}", p.id);
    let mut claims: Vec<_> = p.claims.iter().collect();
    claims.sort();
    for (k, v) in claims {
        let _ = writeln!(out, "  {k:<9}{v}");
    }
    let _ = writeln!(out, "session    {}", a.session_id);
    let _ = writeln!(out, "target     {}", a.target);
    let _ = writeln!(
        out,
        "policies   {} — {}",
        a.policies.join(", "),
        a.policy_reason
    );
    let _ = writeln!(out, "reviewers  {}", a.reviewers.join(", "));
    let _ = writeln!(out, "created    {}", time(a.created.as_ref()));
    let _ = writeln!(out, "deadline   {}", time(a.deadline.as_ref()));
    if !a.decided_by.is_empty() || !a.reason.is_empty() {
        let _ = writeln!(
            out,
            "decided    {} by {} — {}",
            time(a.decided.as_ref()),
            a.decided_by,
            a.reason
        );
    }
    for f in &a.notification_failures {
        let _ = writeln!(out, "notification failed: {f}");
    }
    out
}

/// `approvals show ID`.
pub async fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let a = client(&args.pdp)
        .await?
        .get_approval(pb::GetApprovalRequest {
            approval_id: args.id.clone(),
            reviewer_token: args.token.token.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .approval
        .context("the PDP answered without an approval")?;
    print!("{}", describe(&a));
    Ok(())
}

/// `approvals approve ID` (`approve = true`) or `approvals deny ID`.
pub async fn decide(args: &DecideArgs, approve: bool) -> anyhow::Result<()> {
    let mut c = client(&args.pdp).await?;
    // Two RPCs with the same fields: only the request type and method differ.
    let answer = if approve {
        c.approve(pb::ApproveRequest {
            approval_id: args.id.clone(),
            reviewer_token: args.token.token.clone(),
            reason: args.reason.clone(),
        })
        .await
        .map(|r| r.into_inner().approval)
    } else {
        c.deny(pb::DenyRequest {
            approval_id: args.id.clone(),
            reviewer_token: args.token.token.clone(),
            reason: args.reason.clone(),
        })
        .await
        .map(|r| r.into_inner().approval)
    };
    let a = answer
        .map_err(status_error)?
        .context("the PDP answered without an approval")?;
    println!("approval {} {}", a.id, state_name(a.state()));
    Ok(())
}

/// Runs a subcommand.
pub async fn run(command: &ApprovalsCommand) -> anyhow::Result<()> {
    match command {
        ApprovalsCommand::List(a) => list(a).await,
        ApprovalsCommand::Show(a) => show(a).await,
        ApprovalsCommand::Approve(a) => decide(a, true).await,
        ApprovalsCommand::Deny(a) => decide(a, false).await,
    }
}
