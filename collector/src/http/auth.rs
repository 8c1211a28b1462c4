//! Who may do what on the HTTP API: an admin token (generated at first
//! start, kept in a 0600 file, never logged) for everything that writes,
//! optional read-only tokens, and open reads unless `http.open_read =
//! false`. A token comes as `Authorization: Bearer <token>` or, for the
//! web console's forms, in the `sobre_token` cookie (HttpOnly,
//! SameSite=Strict). Tokens are compared in constant time.

use super::ApiError;
use crate::metrics::Metrics;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "cannot {op} the API token file {path}: {err}; check http.admin_token_file and the data directory's permissions"
    )]
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("the API token file {0} holds no token; delete it to have a new one generated")]
    Empty(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Admin,
}

/// The tokens this collector accepts.
pub struct Tokens {
    secrets: std::sync::RwLock<Secrets>,
    pub admin_file: PathBuf,
    read_file: Option<PathBuf>,
    open_read: bool,
}

/// The tokens in force; replaced whole when their files change.
#[derive(PartialEq)]
struct Secrets {
    admin: String,
    read: Vec<String>,
}

impl std::fmt::Debug for Tokens {
    // Never print a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("admin_file", &self.admin_file)
            .field("read_tokens", &self.secrets().read.len())
            .field("open_read", &self.open_read)
            .finish_non_exhaustive()
    }
}

/// 32 random bytes from the kernel's CSPRNG, as 64 hex characters.
pub fn random_token() -> io::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn read_tokens(path: &Path) -> Result<Vec<String>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|err| AuthError::Io {
        op: "read",
        path: path.to_owned(),
        err,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// The admin token in `path`, generated (0600, owner only) if the file
/// does not exist yet. The bool says whether it was just generated.
pub fn admin_token(path: &Path) -> Result<(String, bool), AuthError> {
    let io = |op, err| AuthError::Io {
        op,
        path: path.to_owned(),
        err,
    };
    match sobre_base::files::create_private_new(path) {
        Ok(mut f) => {
            let t = random_token().map_err(|e| io("generate", e))?;
            f.write_all(format!("{t}\n").as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| io("write", e))?;
            Ok((t, true))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let t = read_tokens(path)?
                .into_iter()
                .next()
                .ok_or_else(|| AuthError::Empty(path.to_owned()))?;
            Ok((t, false))
        }
        Err(e) => Err(io("create", e)),
    }
}

impl Tokens {
    /// Loads (or generates) the tokens the config names.
    pub fn load(cfg: &crate::config::HttpConfig, data_dir: &Path) -> Result<Tokens, AuthError> {
        let admin_file = cfg
            .admin_token_file
            .clone()
            .unwrap_or_else(|| data_dir.join("admin.token"));
        let (admin, generated) = admin_token(&admin_file)?;
        if generated {
            tracing::info!(file = %admin_file.display(), "admin API token generated; it is in this file (owner-only)");
        }
        let read = match &cfg.read_tokens_file {
            Some(p) => read_tokens(p)?,
            None => Vec::new(),
        };
        Ok(Tokens {
            secrets: std::sync::RwLock::new(Secrets { admin, read }),
            admin_file,
            read_file: cfg.read_tokens_file.clone(),
            open_read: cfg.open_read,
        })
    }

    fn secrets(&self) -> std::sync::RwLockReadGuard<'_, Secrets> {
        // A panic while holding the lock leaves the tokens usable.
        self.secrets.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the token files again (rotation without a restart): a new
    /// admin token in its file, or a deleted file (a new token is then
    /// generated in it), or an edited read-token file, takes effect at
    /// once. True when something changed. On an error the tokens in force
    /// stay.
    pub fn refresh(&self) -> Result<bool, AuthError> {
        let (admin, generated) = admin_token(&self.admin_file)?;
        let read = match &self.read_file {
            Some(p) => read_tokens(p)?,
            None => Vec::new(),
        };
        let fresh = Secrets { admin, read };
        let mut cur = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        if *cur == fresh {
            return Ok(false);
        }
        let (admin_changed, read_changed) = (cur.admin != fresh.admin, cur.read != fresh.read);
        *cur = fresh;
        tracing::warn!(
            admin_changed,
            generated,
            read_changed,
            file = %self.admin_file.display(),
            "API tokens rotated: the old ones no longer work"
        );
        Ok(true)
    }

    /// The role a presented token gives, if any.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let s = self.secrets();
        if ct_eq(token.as_bytes(), s.admin.as_bytes()) {
            return Some(Role::Admin);
        }
        // Every read token is compared, whichever matches.
        let read = s
            .read
            .iter()
            .fold(false, |hit, t| ct_eq(token.as_bytes(), t.as_bytes()) | hit);
        read.then_some(Role::Read)
    }
}

/// Reads the token files again every `every` until `cancel`.
pub async fn refresh_loop(
    tokens: std::sync::Arc<Tokens>,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = tokens.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || t.refresh()).await {
            tracing::warn!(error = %e, "cannot read the API token files again; the tokens in force stay");
        }
    }
}

/// Constant-time equality (for equal lengths; a length mismatch returns
/// at once, which reveals only the length of a random token).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request carries: bearer header first, then the cookie.
fn presented(req: &Request) -> Option<&str> {
    let h = req.headers();
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ").map(str::trim);
    }
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("sobre_token="))
}

/// Paths open to anyone: health checks, and enrolment (its one-time token
/// is checked by the handler).
fn public(path: &str) -> bool {
    matches!(path, "/health" | "/login" | "/logout")
}

/// The console's pages (not the API, not /metrics): a refused request is
/// sent to the sign-in page rather than answered with JSON.
fn console_page(path: &str) -> bool {
    !(path == "/api" || path.starts_with("/api/") || path == "/metrics")
}

#[derive(Clone)]
pub struct AuthState {
    pub tokens: Arc<Tokens>,
    pub metrics: Arc<Metrics>,
}

/// The role a request needs: admin for anything that is not a read, and
/// for reading the enrolment tokens (which ids and groups may enrol).
fn needed(method: &Method, path: &str) -> Role {
    if path.starts_with("/api/v1/enrolments") {
        Role::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Role::Read
    } else {
        Role::Admin
    }
}

/// Middleware: refuses a request without the role it needs, with a JSON
/// error that says what to send; counts refusals by reason.
pub async fn guard(State(s): State<AuthState>, mut req: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    let need = needed(req.method(), req.uri().path());
    let role = presented(&req).and_then(|t| s.tokens.role_of(t));
    // Handlers may ask who is calling (the console shows its actions to
    // admins only, and checks again before acting).
    if let Some(r) = role {
        req.extensions_mut().insert(r);
    }
    if public(req.uri().path()) || (need == Role::Read && s.tokens.open_read) {
        return next.run(req).await;
    }
    // An API write carried by the sign-in cookie must come from this
    // collector's own pages: the browser sends the cookie to any page of
    // the same site, another port or subdomain included. (The console's
    // forms check the same with a page of their own: console/access.rs.)
    let by_cookie = !req.headers().contains_key(header::AUTHORIZATION);
    let api = !console_page(req.uri().path());
    let forged = (need == Role::Admin && role.is_some() && by_cookie && api)
        .then(|| super::origin::cross_site(req.headers()))
        .flatten();
    let refused = match (role, need) {
        _ if forged.is_some() => Some((
            StatusCode::FORBIDDEN,
            "cross_site",
            "refused: this write was sent by a page of another site with the sign-in cookie; \
             scripts send `Authorization: Bearer <token>`",
        )),
        (Some(have), need) if have >= need => return next.run(req).await,
        (Some(_), _) => Some((
            StatusCode::FORBIDDEN,
            "read_only_token",
            "this needs the admin token; a read-only token was sent",
        )),
        (None, _) if presented(&req).is_some() => Some((
            StatusCode::UNAUTHORIZED,
            "bad_token",
            "the token sent is not valid (rotated or mistyped?)",
        )),
        (None, Role::Admin) => Some((
            StatusCode::UNAUTHORIZED,
            "no_token",
            "this needs the admin token: send `Authorization: Bearer <token>`; the collector \
             stores it in the file named by http.admin_token_file (default: admin.token in \
             data_dir) and the quick start prints it",
        )),
        (None, Role::Read) => Some((
            StatusCode::UNAUTHORIZED,
            "no_token",
            "reads need a token here (http.open_read = false): send `Authorization: Bearer <token>`",
        )),
    };
    let (status, reason, msg) = refused.unwrap_or((StatusCode::UNAUTHORIZED, "no_token", ""));
    s.metrics.http_refused(reason);
    // Anyone can send these: one line per reason and period, the rest
    // summarised (limits/log.rs).
    if let Some(more) = crate::limits::logs().due(("http", reason), std::time::Instant::now()) {
        tracing::warn!(method = %req.method(), path = req.uri().path(), reason, origin = forged.as_deref().unwrap_or(""), "API request refused{more}");
    }
    if console_page(req.uri().path()) {
        let back = match req.method() {
            &Method::GET => req.uri().path_and_query().map_or("/", |p| p.as_str()),
            _ => "/",
        };
        let to = format!("/login?back={}", crate::console::fmt::urlenc(back));
        return (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    }
    let mut resp = ApiError(status, msg.into()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"sobre\""),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_is_generated_once_owner_only_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.token");
        let (t, new) = admin_token(&path).expect("generate");
        assert!(new);
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, new) = admin_token(&path).expect("read back");
        assert_eq!((again.as_str(), new), (t.as_str(), false));
        assert_ne!(random_token().expect("rng"), t);
    }

    #[test]
    fn an_empty_token_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "# nothing\n").expect("write");
        let e = admin_token(&path).expect_err("empty");
        assert!(e.to_string().contains("delete it"), "{e}");
    }

    #[test]
    fn tokens_rotate_without_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let read_file = dir.path().join("read.tokens");
        std::fs::write(&read_file, format!("{}\n", "r".repeat(64))).expect("write");
        let cfg = crate::config::HttpConfig {
            read_tokens_file: Some(read_file.clone()),
            ..Default::default()
        };
        let t = Tokens::load(&cfg, dir.path()).expect("load");
        let old = std::fs::read_to_string(&t.admin_file).expect("admin file");
        let old = old.trim();
        assert_eq!(t.role_of(old), Some(Role::Admin));
        assert!(!t.refresh().expect("refresh"), "nothing changed yet");
        // A new admin token written into the file replaces the old one.
        std::fs::write(&t.admin_file, format!("{}\n", "b".repeat(64))).expect("write");
        std::fs::write(&read_file, format!("{}\n", "s".repeat(64))).expect("write");
        assert!(t.refresh().expect("refresh"));
        assert_eq!(t.role_of(old), None, "the old admin token is refused");
        assert_eq!(t.role_of(&"b".repeat(64)), Some(Role::Admin));
        assert_eq!(t.role_of(&"r".repeat(64)), None, "the old read token too");
        assert_eq!(t.role_of(&"s".repeat(64)), Some(Role::Read));
        // A deleted admin file: a new token is generated into it.
        std::fs::remove_file(&t.admin_file).expect("rm");
        assert!(t.refresh().expect("refresh"));
        let new = std::fs::read_to_string(&t.admin_file).expect("regenerated");
        assert_eq!(t.role_of(new.trim()), Some(Role::Admin));
        assert_eq!(t.role_of(&"b".repeat(64)), None);
    }

    #[test]
    fn roles_follow_the_token() {
        let t = Tokens {
            secrets: std::sync::RwLock::new(Secrets {
                admin: "a".repeat(64),
                read: vec!["r".repeat(64)],
            }),
            admin_file: PathBuf::new(),
            read_file: None,
            open_read: true,
        };
        assert_eq!(t.role_of(&"a".repeat(64)), Some(Role::Admin));
        assert_eq!(t.role_of(&"r".repeat(64)), Some(Role::Read));
        assert_eq!(t.role_of(&"a".repeat(63)), None);
        assert_eq!(t.role_of(""), None);
        assert!(!format!("{t:?}").contains("aaaa"), "tokens never printed");
        assert!(Role::Admin > Role::Read);
    }

    #[test]
    fn reads_need_read_and_everything_else_admin() {
        assert_eq!(needed(&Method::GET, "/api/v1/agents"), Role::Read);
        assert_eq!(needed(&Method::POST, "/api/v1/agents"), Role::Admin);
        assert_eq!(needed(&Method::PUT, "/api/v1/agents"), Role::Admin);
        assert_eq!(needed(&Method::DELETE, "/api/v1/agents"), Role::Admin);
        assert_eq!(needed(&Method::GET, "/api/v1/enrolments"), Role::Admin);
        assert_eq!(needed(&Method::GET, "/api/v1/enrolments/ab12"), Role::Admin);
        assert!(public("/health") && public("/login"));
        assert!(!public("/api/v1/campaigns"));
        assert!(console_page("/campaigns") && console_page("/"));
        assert!(!console_page("/api/v1/agents") && !console_page("/metrics"));
    }
}
