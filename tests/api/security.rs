//! Security: what one tenant, an unauthenticated caller or a hostile peer must not be
//! able to do (issue 16). Each module is one finding, tested through the real server.

mod connections;
mod error_size;
mod malformed;
mod metric_labels;
mod receiver;
mod record_ids;
mod ssrf;
mod tokens;
mod validation;
mod webhook_secrets;
