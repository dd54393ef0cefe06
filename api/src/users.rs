//! `/api/v1/users` (admin) and `/api/v1/me`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use tessera_domain::catalog::{Account, CatalogOp, CatalogOutcome, Role, User};

use crate::auth::Principal;
use crate::error::{unexpected, ApiError};
use crate::json_body::JsonBody;
use crate::paging;
use crate::password;
use crate::propose::propose;
use crate::token::now_ms;
use crate::AppState;

/// A user as the API answers it (never the password hash).
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "User")]
pub struct UserView {
    id: u64,
    username: String,
    role: Role,
    disabled: bool,
    /// Unix milliseconds.
    created_ms: u64,
}

fn view(account: &Account) -> UserView {
    let user = &account.user;
    UserView {
        id: account.id,
        username: user.username.clone(),
        role: user.role,
        disabled: user.disabled,
        created_ms: user.created_ms,
    }
}

fn invalid(field: &str, message: &str) -> ApiError {
    crate::error::invalid(format!("{field}: {message}"))
}

fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    ok.then_some(())
        .ok_or_else(|| invalid("username", "1-64 characters of a-z, 0-9, '.', '_' and '-'"))
}

pub(crate) fn check_password(password: &str) -> Result<(), ApiError> {
    (password.chars().count() >= 8 && password.len() <= 1024)
        .then_some(())
        .ok_or_else(|| invalid("password", "at least 8 characters"))
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    Role::parse(role).ok_or_else(|| invalid("role", "one of admin, manager, reviewer, annotator"))
}

async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))
}

/// Proposes a user op; a missing user is `no_such_user`.
async fn propose_user_op(state: &AppState, op: CatalogOp) -> Result<CatalogOutcome, ApiError> {
    propose(state, op).await.map_err(|e| match e.status {
        StatusCode::NOT_FOUND => ApiError::new(e.status, "no_such_user", e.message),
        _ => e,
    })
}

fn answer(outcome: CatalogOutcome, created: bool) -> Result<Response, ApiError> {
    match outcome {
        CatalogOutcome::Account(account) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(view(&account))).into_response())
        }
        // `User`: a retry of a request applied before user ids existed (its user has no id).
        CatalogOutcome::Done | CatalogOutcome::User(_) => {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/users?limit=&cursor=`: users in name order; `next_cursor` continues the list.
pub async fn list(
    State(state): State<AppState>,
    Query(page): Query<paging::Page>,
) -> Result<Json<Value>, ApiError> {
    state.cluster.catalog_barrier().await?;
    let limit = paging::limit(page.limit);
    let users = state
        .cluster
        .directory()
        .users(page.cursor.as_deref(), limit + 1);
    Ok(Json(paging::page(
        &users,
        limit,
        |a| a.user.username.clone(),
        view,
    )))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schemars(regex(pattern = r"^[a-z0-9._-]{1,64}$"))]
    username: String,
    #[schemars(length(min = 8, max = 1024))]
    password: String,
    #[schemars(with = "tessera_domain::catalog::Role")]
    role: String,
}

/// `POST /api/v1/users`.
pub async fn create(
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewUser>,
) -> Result<Response, ApiError> {
    check_username(&new.username)?;
    check_password(&new.password)?;
    let role = parse_role(&new.role)?;
    let user = User {
        username: new.username,
        role,
        password_hash: hash(new.password).await?,
        disabled: false,
        created_ms: now_ms(),
        epoch: 0,
    };
    answer(
        propose_user_op(&state, CatalogOp::CreateUser(user)).await?,
        true,
    )
}

/// `GET /api/v1/users/{name}` (admins, or the user themself).
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    if principal.username != name {
        principal.require(Role::Admin)?;
    }
    state.cluster.catalog_barrier().await?;
    let user = state.cluster.directory().user(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_user",
            format!("no user {name}"),
        )
    })?;
    Ok(Json(view(&user)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UserChange")]
pub struct Change {
    #[schemars(length(min = 8, max = 1024))]
    password: Option<String>,
    #[schemars(with = "Option<tessera_domain::catalog::Role>")]
    role: Option<String>,
    disabled: Option<bool>,
}

/// `PATCH /api/v1/users/{name}`: password, role, disabled. A change ends every session of the
/// user (the epoch moves on); users change their own password with `PUT /api/v1/me/password`.
pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(change): JsonBody<Change>,
) -> Result<Response, ApiError> {
    let role = change.role.as_deref().map(parse_role).transpose()?;
    let password_hash = match change.password {
        Some(p) => {
            check_password(&p)?;
            Some(hash(p).await?)
        }
        None => None,
    };
    let op = CatalogOp::UpdateUser {
        username: name,
        password_hash,
        role,
        disabled: change.disabled,
    };
    answer(propose_user_op(&state, op).await?, false)
}

/// `DELETE /api/v1/users/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if principal.username == name {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot delete your own account",
        ));
    }
    let op = CatalogOp::DeleteUser { username: name };
    answer(propose_user_op(&state, op).await?, false)
}

/// `GET /api/v1/me`.
pub async fn me(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<UserView>, ApiError> {
    let account = principal.account(&state)?;
    Ok(Json(view(&account)))
}

/// Creates the `admin` user on a new cluster: the password is `TESSERA_ADMIN_PASSWORD` if set,
/// else generated and written to `<data dir>/initial-admin-password` (mode 0600). Returns
/// whether an admin was created.
pub async fn bootstrap_admin(state: &AppState) -> Result<bool, ApiError> {
    state.cluster.catalog_barrier().await?;
    if state.cluster.directory().user_count() > 0 {
        return Ok(false);
    }
    let (password, generated) = match std::env::var("TESSERA_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (
            password::generate().map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?,
            true,
        ),
    };
    let user = User {
        username: "admin".into(),
        role: Role::Admin,
        password_hash: hash(password.clone()).await?,
        disabled: false,
        created_ms: now_ms(),
        epoch: 0,
    };
    let created = matches!(
        crate::idempotency::catalog(state, CatalogOp::CreateUser(user)).await?,
        CatalogOutcome::Account(_)
    );
    if created && generated {
        let path = state.data_dir.join("initial-admin-password");
        let dir = state.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::create_dir_all(&dir)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            writeln!(f, "{password}")?;
            f.sync_all()
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    }
    Ok(created)
}
