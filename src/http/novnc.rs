//! `GET|HEAD /novnc/…`: the noVNC client, served from `NOVNC_DIR` (Debian: /usr/share/novnc).
//!
//! The path is checked by [`super::static_files`] (no `.`/`..` segments, backslashes or NUL:
//! 400), then the file is canonicalized and must lie inside an allowed root: the noVNC
//! directory itself or, for the symlinks distribution packages make into shared JavaScript
//! libraries, `/usr/share/javascript`. Anything else is 404. Validators are the file's size
//! and mtime (`ETag`) and its mtime (`Last-Modified`); 304s and gzip as for every static file.
//! `/novnc` redirects to `/novnc/`, which serves `vnc.html`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use tiny_http::Request;

use super::error::{ApiError, ApiResult};
use super::reply::Reply;
use super::request::path;
use super::router::Params;
use super::static_files::{StaticFile, content_type, http_date, relative_path};
use crate::app::App;

/// Where distribution packages keep shared JavaScript that noVNC's files may link to.
const SHARED_JS: &str = "/usr/share/javascript";
/// Larger files are not served (noVNC's largest is a few hundred KiB).
const MAX_FILE: u64 = 16 << 20;
const CACHE_CONTROL: &str = "public, max-age=600";

/// `GET /novnc/{path}` (and HEAD: tiny_http drops the body).
pub(crate) fn get(app: &App, request: &mut Request, params: &Params) -> ApiResult<Reply> {
    if path(request.url()) == "/novnc" {
        return Ok(
            Reply::with_status(301, serde_json::json!({"location": "/novnc/"}))
                .header("Location", "/novnc/"),
        );
    }
    let root = &app.desktops.config().novnc_dir;
    let file = resolve(root, &params.tail)?;
    serve(request, &file)
}

/// The canonical file `tail` names under `root`.
fn resolve(root: &Path, tail: &str) -> ApiResult<PathBuf> {
    let relative = relative_path(tail, "vnc.html")?;
    let root = root.canonicalize().map_err(|_| {
        ApiError::not_found(format!(
            "noVNC is not installed ({} does not exist; install the novnc package or set NOVNC_DIR)",
            root.display()
        ))
    })?;
    let missing = || ApiError::not_found(format!("/novnc/{tail} not found"));
    let file = root.join(relative).canonicalize().map_err(|_| missing())?;
    let shared_js = Path::new(SHARED_JS).canonicalize().ok();
    let allowed = file.starts_with(&root) || shared_js.is_some_and(|js| file.starts_with(js));
    if !allowed || !file.is_file() {
        return Err(missing());
    }
    Ok(file)
}

/// The file with its validators (size and mtime), or 304 when the client's copy is current.
fn serve(request: &Request, file: &Path) -> ApiResult<Reply> {
    let unreadable = |err: std::io::Error| {
        log::warn!("novnc: cannot read {}: {err}", file.display());
        ApiError::not_found("file not readable")
    };
    let meta = std::fs::metadata(file).map_err(unreadable)?;
    if meta.len() > MAX_FILE {
        return Err(ApiError::not_found("file too large to serve"));
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    let key = file.to_string_lossy();
    let static_file = StaticFile {
        key: &key,
        content_type: content_type(file),
        etag: format!(
            "\"{:x}-{:x}\"",
            meta.len(),
            mtime.map_or(0, |d| d.as_nanos())
        ),
        last_modified: Some(http_date(mtime.map_or(0, |d| d.as_secs()) as i64)),
        cache_control: CACHE_CONTROL,
    };
    static_file.reply(request, || {
        std::fs::read(file).map(Arc::from).map_err(unreadable)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outside_the_root_are_not_found_even_through_symlinks() {
        let dir = std::env::temp_dir().join(format!("novnc-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("app")).unwrap();
        std::fs::write(dir.join("vnc.html"), "<html>").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("app/passwd")).unwrap();
        std::os::unix::fs::symlink(dir.join("vnc.html"), dir.join("auto.html")).unwrap();
        assert!(resolve(&dir, "").unwrap().ends_with("vnc.html"));
        assert!(resolve(&dir, "auto.html").unwrap().ends_with("vnc.html"));
        assert_eq!(resolve(&dir, "app/passwd").unwrap_err().status, 404);
        assert_eq!(resolve(&dir, "app").unwrap_err().status, 404);
        assert_eq!(resolve(&dir, "../etc/passwd").unwrap_err().status, 400);
        assert_eq!(resolve(&dir.join("nope"), "x").unwrap_err().status, 404);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
