//! How large a request body each kind of route reads, in one table: a body over its route's
//! limit is refused with 413 before anything of it is kept. Sign-in and the forms that post
//! only their token are small, so a stranger cannot make the server buffer megabytes.

/// The largest file a form or the API takes.
pub const UPLOAD: usize = 10 << 20;
/// A start or task form: its fields and up to six files.
pub const FORM_WITH_FILES: usize = 6 * UPLOAD;
/// Sign-in (a name, a password, a code and the next path) and the forms that post only
/// their CSRF token (sign out, claim, withdraw, mark read).
pub const SMALL_FORM: usize = 8 << 10;
/// A JSON API body or an Open311 post: a form's data and a reason, with room to spare.
pub const JSON: usize = 2 << 20;
/// `POST /api/attachments`: one file, and a byte more so that a file just too large is
/// told so by the upload check rather than cut off.
pub const ATTACHMENT: usize = UPLOAD + 1;
/// `POST /api/plugins`: a module's base64 plus its manifest.
pub const PLUGIN_PACKAGE: usize = civicflow_plugin_host::manifest::MAX_MODULE_BYTES * 4 / 3 + (256 << 10);
