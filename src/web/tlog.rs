//! The audit log, read-only, at the paths C2SP tlog-tiles gives (under `/audit`), so that
//! witnesses and any tlog client can follow and check it without SSH: `checkpoint`, the latest
//! signed tree head; `tile/<L>/<N>[.p/<W>]`, hash tiles as stored; `tile/entries/<N>[.p/<W>]`,
//! entry bundles where each entry is only what a stranger may see (its leaf hash and its
//! action, see [`crate::audit::public_entry`]).
//!
//! A tile at a given width never changes, partial or full, so every tile is served as
//! immutable; the checkpoint changes as the log grows and is revalidated.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppError, WebState};

/// Tiles never change: a year, immutable.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The checkpoint moves on: a few seconds.
const MOVING: &str = "public, max-age=5, must-revalidate";

fn missing(what: &str) -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "not_found", what)
}

/// The latest signed checkpoint, a C2SP signed note.
#[utoipa::path(
    get,
    path = "/audit/checkpoint",
    tag = "audit",
    operation_id = "auditCheckpoint",
    responses(
        (status = 200, description = "The latest checkpoint, a signed note.", content_type = "text/plain; charset=utf-8", body = String),
        (status = 404, description = "No checkpoint was signed yet.", body = crate::views::ErrorView),
    ),
)]
pub async fn checkpoint(State(state): State<WebState>) -> Result<Response, AppError> {
    let note = state
        .appliance
        .audit_latest_checkpoint()?
        .ok_or_else(|| missing("no checkpoint was signed yet"))?;
    Ok(signed_note(note, MOVING))
}

/// A signed note as text, cached as `cache` says.
fn signed_note(note: String, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, cache),
        ],
        note,
    )
        .into_response()
}

/// A hash tile or an entry bundle.
#[utoipa::path(
    get,
    path = "/audit/tile/{path}",
    tag = "audit",
    operation_id = "auditTile",
    params(("path" = String, Path, description = "`<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, as C2SP tlog-tiles names tiles")),
    responses(
        (status = 200, description = "The tile's bytes: 32-byte hashes, or entries each after its big-endian u16 length.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such tile in the log.", body = crate::views::ErrorView),
    ),
)]
pub async fn tile(
    State(state): State<WebState>,
    Path(path): Path<String>,
) -> Result<Response, AppError> {
    if path.len() > 64 {
        return Err(missing("no such tile"));
    }
    let bytes = state
        .appliance
        .audit_tile(format!("tile/{path}"))
        .await?
        .ok_or_else(|| missing("no such tile"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, IMMUTABLE),
        ],
        bytes,
    )
        .into_response())
}

/// The note in which the checkpoint key of generation `N - 1` hands the log over to generation
/// `N` (`N.note`, from 2 on), signed by both keys: a client that pinned an earlier key follows
/// these from it, as the appliance's directory keeps them (`handovers/N.note`).
#[utoipa::path(
    get,
    path = "/audit/handovers/{name}",
    tag = "audit",
    operation_id = "auditHandover",
    params(("name" = String, Path, description = "`<N>.note`, N the generation handed over to (2, 3, ...)")),
    responses(
        (status = 200, description = "The handover, a signed note.", content_type = "text/plain; charset=utf-8", body = String),
        (status = 404, description = "No such handover: the key was never rotated that far.", body = crate::views::ErrorView),
    ),
)]
pub async fn handover(
    State(state): State<WebState>,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    let generation = name
        .strip_suffix(".note")
        .filter(|n| n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n >= 2)
        .ok_or_else(|| missing("no such handover"))?;
    let note = state
        .appliance
        .audit_handovers()
        .get(generation - 2)
        .cloned()
        .ok_or_else(|| missing("no such handover"))?;
    Ok(signed_note(note, IMMUTABLE))
}
