//! Provider tests: each channel provider against a local fake HTTP server that speaks its
//! API (axum on 127.0.0.1:0; loopback only), plus the log provider against a temp file.
//! Every test is bounded: provider timeouts are 200 ms and each call runs under a guard.

mod fake;

mod log;
mod twilio;
mod webhook;
mod whatsapp;
