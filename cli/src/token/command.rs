//! The `palisade token` command line: arguments, CI presets and small parsers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Map, Value};

use super::{DevClaims, DevIssuer};

/// Command-line arguments of `palisade token`, which mints a token from the
/// development issuer for trying the PDP and agents locally.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// Directory of the development issuer's key and JWKS (created if missing).
    #[arg(long, value_name = "PATH", default_value = "./.palisade/dev-issuer")]
    pub dir: PathBuf,
    /// `iss` of the tokens; the PDP must trust this issuer with the JWKS file.
    #[arg(long, value_name = "URL", default_value = "https://dev.palisade.local")]
    pub issuer: String,
    /// `sub` of the token; required unless --github-actions or --gitlab-ci
    /// provide one.
    #[arg(long, value_name = "SUBJECT")]
    pub sub: Option<String>,
    /// `aud` of the token (repeatable).
    #[arg(long, value_name = "AUDIENCE", default_values = ["palisade"])]
    pub aud: Vec<String>,
    /// A group the subject belongs to (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// An extra claim (repeatable): `key=value` for a string, `key:=json` for
    /// any JSON value (`run_attempt:=2`, `admin:=true`). Overrides presets.
    #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = parse_claim)]
    pub claims: Vec<(String, Value)>,
    /// Lifetime of the token: `90s`, `15m`, `1h`, `1h30m`, `2d`.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Add claims shaped like a GitHub Actions OIDC token (repository,
    /// ref, sha, run_id, actor, workflow, job_workflow_ref, event_name, …).
    #[arg(long, conflicts_with = "gitlab_ci")]
    pub github_actions: bool,
    /// Add claims shaped like a GitLab CI id_token (project_path, ref, sha,
    /// pipeline_id, job_id, user_login, …).
    #[arg(long)]
    pub gitlab_ci: bool,
}

/// Runs `palisade token`: prints the token on stdout and, on stderr, that it
/// comes from a development issuer and how to make the PDP trust it.
pub fn run(args: &TokenArgs) -> Result<()> {
    let issuer = DevIssuer::create_or_load(&args.dir, &args.issuer)?;
    let claims = claims_for(args)?;
    let token = issuer.mint(&claims)?;
    eprintln!(
        "warning: this token comes from a DEVELOPMENT issuer; never trust it in production.\n\
         \x20        PDP settings: issuer `{}`, JWKS file `{}` (kid `{}`)",
        issuer.issuer(),
        issuer.jwks_path().display(),
        issuer.kid()
    );
    println!("{token}");
    Ok(())
}

/// The claims `args` ask for: preset first, then `--claim` on top.
pub(super) fn claims_for(args: &TokenArgs) -> Result<DevClaims> {
    let overrides: Map<String, Value> = args.claims.iter().cloned().collect();
    let preset = if args.github_actions {
        Some(github_actions(&overrides))
    } else if args.gitlab_ci {
        Some(gitlab_ci(&overrides))
    } else {
        None
    };
    let (preset_sub, mut extra) = preset.unwrap_or_default();
    extra.extend(overrides);
    let sub = match (&args.sub, preset_sub) {
        (Some(sub), _) => sub.clone(),
        (None, Some(sub)) => sub,
        (None, None) => bail!("--sub is required unless --github-actions or --gitlab-ci is given"),
    };
    Ok(DevClaims {
        aud: args.aud.clone(),
        groups: args.groups.clone(),
        ttl: args.ttl,
        extra,
        ..DevClaims::new(sub, "")
    })
}

/// A string claim from the overrides, or `default`: derived claims (`sub`,
/// `job_workflow_ref`) then agree with an overridden repository or ref.
fn pick(overrides: &Map<String, Value>, key: &str, default: &str) -> String {
    overrides
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_owned()
}

/// Claims of a GitHub Actions OIDC token for a push to `main` of `acme/app`.
fn github_actions(overrides: &Map<String, Value>) -> (Option<String>, Map<String, Value>) {
    let repository = pick(overrides, "repository", "acme/app");
    let git_ref = pick(overrides, "ref", "refs/heads/main");
    let owner = repository.split('/').next().unwrap_or_default().to_owned();
    let mut claims = Map::new();
    let mut put = |k: &str, v: String| {
        claims.insert(k.to_owned(), Value::String(v));
    };
    put("repository", repository.clone());
    put("repository_owner", owner);
    put("ref", git_ref.clone());
    put("ref_type", "branch".to_owned());
    put("sha", random_hex_sha());
    put("run_id", random_id());
    put("run_number", "1".to_owned());
    put("run_attempt", "1".to_owned());
    put("actor", "dev-user".to_owned());
    put("workflow", "ci".to_owned());
    put(
        "job_workflow_ref",
        format!("{repository}/.github/workflows/ci.yml@{git_ref}"),
    );
    put("event_name", "push".to_owned());
    put("runner_environment", "github-hosted".to_owned());
    (Some(format!("repo:{repository}:ref:{git_ref}")), claims)
}

/// Claims of a GitLab CI id_token for a pipeline on `main` of `acme/app`.
fn gitlab_ci(overrides: &Map<String, Value>) -> (Option<String>, Map<String, Value>) {
    let project = pick(overrides, "project_path", "acme/app");
    let git_ref = pick(overrides, "ref", "main");
    let namespace = project
        .rsplit_once('/')
        .map_or(project.as_str(), |(ns, _)| ns)
        .to_owned();
    let mut claims = Map::new();
    let mut put = |k: &str, v: String| {
        claims.insert(k.to_owned(), Value::String(v));
    };
    put("project_path", project.clone());
    put("namespace_path", namespace);
    put("ref", git_ref.clone());
    put("ref_type", "branch".to_owned());
    put("sha", random_hex_sha());
    put("pipeline_id", random_id());
    put("pipeline_source", "push".to_owned());
    put("job_id", random_id());
    put("user_login", "dev-user".to_owned());
    (
        Some(format!(
            "project_path:{project}:ref_type:branch:ref:{git_ref}"
        )),
        claims,
    )
}

/// A random 40-hex-digit commit sha.
fn random_hex_sha() -> String {
    rand::random::<[u8; 20]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random 10-digit run / pipeline / job id (a string, as CI systems send it).
fn random_id() -> String {
    rand::random_range(1_000_000_000_u64..10_000_000_000).to_string()
}

/// Parses `key=value` (a string) or `key:=json` (any JSON value).
pub(super) fn parse_claim(arg: &str) -> Result<(String, Value)> {
    let (key, value) = if let Some((key, json)) = arg.split_once(":=") {
        let value = serde_json::from_str(json)
            .with_context(|| format!("`{json}` after `:=` is not JSON"))?;
        (key, value)
    } else if let Some((key, text)) = arg.split_once('=') {
        (key, Value::String(text.to_owned()))
    } else {
        bail!("expected `key=value` or `key:=json`, got `{arg}`");
    };
    ensure!(!key.is_empty(), "the claim name in `{arg}` is empty");
    Ok((key.to_owned(), value))
}

/// Parses a lifetime like `90s`, `15m`, `1h30m` or `2d`; a bare number is
/// seconds. Zero is refused: such a token is expired when minted.
pub(super) fn parse_ttl(arg: &str) -> Result<Duration> {
    ensure!(!arg.is_empty(), "the lifetime is empty");
    let mut total: u64 = 0;
    let mut rest = arg;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number
            .parse()
            .with_context(|| format!("`{arg}` is not a lifetime like `15m` or `1h30m`"))?;
        let units = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(units);
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "" if tail.is_empty() && total == 0 => 1,
            _ => bail!("unknown unit in lifetime `{arg}`: use s, m, h or d"),
        };
        total = number
            .checked_mul(scale)
            .and_then(|secs| total.checked_add(secs))
            .with_context(|| format!("lifetime `{arg}` is too long"))?;
        rest = tail;
    }
    ensure!(total > 0, "the lifetime must be longer than zero");
    Ok(Duration::from_secs(total))
}
