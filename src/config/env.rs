//! The `CONVMSG_*` environment layer of the configuration: `CONVMSG_<KEY>` sets a
//! top-level key, `CONVMSG_<SECTION>__<KEY>` (and deeper, `CONVMSG_PROVIDERS__TWILIO__AUTH_TOKEN`)
//! a key inside a section. Names are case-insensitive up to a map setting (such as
//! `providers.webhook.secrets`), whose entry names are kept as written.
//!
//! A value is typed by the setting it lands on, read from the built-in defaults: a
//! string setting takes the value verbatim (a token of digits stays a string), a number
//! or a boolean is parsed (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`), a list is
//! written as in TOML (`[1000, 5000]`). An empty value counts as unset. A value that does
//! not fit is an error naming the variable; an unknown key inside a known section is an
//! error too (the sections deny unknown keys), naming the variable.
//!
//! Variables whose first part is not a setting are left alone — the client's
//! `CONVMSG_SERVER` and `CONVMSG_TOKEN`, `CONVMSG_CONFIG` (read as the `--config` flag),
//! the test suite's `CONVMSG_TEST_*`, Kubernetes' service links (`CONVMSG_PORT…`,
//! `CONVMSG_SERVICE_…`) — and any other is reported by `ignored_variables` so that
//! `serve` can warn about a misspelt name instead of silently doing nothing.
//!
//! This module only reads the variables it is given; it never changes the environment.

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::Config;

const PREFIX: &str = "CONVMSG_";

/// `CONVMSG_*` names that are not settings of `serve`'s configuration.
const OTHER_VARIABLES: &[&str] = &["CONFIG", "SERVER", "TOKEN", "PORT", "SERVICE_HOST", "SERVICE_PORT"];

/// Prefixes of `CONVMSG_*` names that are not settings (tests, Kubernetes service links).
const OTHER_PREFIXES: &[&str] = &["TEST_", "PORT_", "SERVICE_PORT_"];

/// The environment layer, built from the variables it is given.
pub(super) struct EnvLayer {
    vars: Vec<(String, String)>,
}

impl EnvLayer {
    /// The `CONVMSG_*` variables of this process. A name that is not valid UTF-8 cannot
    /// be a setting and is skipped; a setting's value that is not UTF-8 is an error later.
    pub(super) fn from_process() -> EnvLayer {
        EnvLayer::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            let value = value.into_string().unwrap_or_else(|raw| format!("\u{FFFD}{}", raw.to_string_lossy()));
            Some((name, value))
        }))
    }

    pub(super) fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> EnvLayer {
        EnvLayer { vars: vars.into_iter().filter(|(name, _)| name.starts_with(PREFIX)).collect() }
    }
}

/// The built-in defaults as figment values: the shape that types each variable.
fn shape() -> Dict {
    Value::serialize(Config::default())
        .ok()
        .and_then(Value::into_dict)
        .expect("the default configuration serializes to a dictionary")
}

/// The top-level keys the environment may set: every key but the lists of records
/// (`tenants`, `channels`, …), which only the file declares.
fn settable(shape: &Dict, key: &str) -> bool {
    shape.get(key).is_some_and(|value| !matches!(value, Value::Array(..)))
}

/// `CONVMSG_DISPATCH__LEASE_MS` → `["DISPATCH", "LEASE_MS"]`; `None` if a part is empty.
fn parts(name: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = name.strip_prefix(PREFIX)?.split("__").collect();
    parts.iter().all(|p| !p.is_empty()).then_some(parts)
}

fn is_other_variable(rest: &str) -> bool {
    OTHER_VARIABLES.contains(&rest) || OTHER_PREFIXES.iter().any(|p| rest.starts_with(p))
}

impl EnvLayer {
    /// Every `CONVMSG_*` variable that sets nothing, with a hint where one is likely
    /// meant (`CONVMSG_DISPATCH_LEASE_MS` → `CONVMSG_DISPATCH__LEASE_MS`).
    pub(super) fn ignored(&self) -> Vec<String> {
        let shape = shape();
        let mut ignored = Vec::new();
        for (name, _) in &self.vars {
            let rest = &name[PREFIX.len()..];
            if is_other_variable(rest) {
                continue;
            }
            match parts(name) {
                Some(parts) if settable(&shape, &parts[0].to_ascii_lowercase()) => continue,
                Some(parts) if parts.len() == 1 => {
                    let lower = rest.to_ascii_lowercase();
                    let hint = shape
                        .iter()
                        .filter(|(_, v)| matches!(v, Value::Dict(..)))
                        .find_map(|(section, _)| lower.strip_prefix(&format!("{section}_")))
                        .map(|key| {
                            let section = &rest[..rest.len() - key.len() - 1];
                            format!(" (did you mean {PREFIX}{section}__{}?)", &rest[rest.len() - key.len()..])
                        })
                        .unwrap_or_default();
                    ignored.push(format!("{name}{hint}"));
                }
                _ => ignored.push(name.clone()),
            }
        }
        ignored.sort();
        ignored
    }

    /// The settings the variables make, as a nested dictionary.
    fn settings(&self) -> Result<Dict, String> {
        let shape = shape();
        let mut settings = Dict::new();
        let mut vars: Vec<&(String, String)> = self.vars.iter().collect();
        vars.sort();
        for (name, raw) in vars {
            let Some(parts) = parts(name) else { continue };
            if !settable(&shape, &parts[0].to_ascii_lowercase()) || raw.is_empty() {
                continue;
            }
            if raw.starts_with('\u{FFFD}') {
                return Err(format!("{name} is not valid UTF-8"));
            }
            let (path, kind) = resolve(&shape, &parts);
            let value = typed(name, raw, kind)?;
            insert(&mut settings, &path, value);
        }
        Ok(settings)
    }
}

/// What the default tells about a setting's type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A string, an unset option (always a string here) or a key the defaults do not
    /// have (a map entry, or a misspelt key the section's strict parsing reports).
    Text,
    Number,
    Bool,
    List,
    /// A map with no entries by default (`providers.webhook.secrets`): written `{k = "v"}`.
    Map,
    /// A section with keys of its own: not settable as one value.
    Section,
}

/// Maps whose entries are sections of their own, with the shape of one entry: below the
/// entry's name (kept as written) the keys are the section's, case-insensitive again
/// (`CONVMSG_PROVIDERS__WEBHOOK__TENANTS__acme__SECRET`).
fn entry_shape(map: &[String]) -> Option<Dict> {
    match map {
        [a, b, c] if a == "providers" && b == "webhook" && c == "tenants" => {
            Value::serialize(crate::providers::config::WebhookTenantSecrets::default()).ok()?.into_dict()
        }
        [a, b] if a == "receipts" && b == "tenants" => {
            Value::serialize(super::receipts::ReceiptTenantSecrets::default()).ok()?.into_dict()
        }
        [a, b, _, d] if a == "receipts" && b == "tenants" && d == "channels" => {
            Value::serialize(super::receipts::ReceiptSecrets::default()).ok()?.into_dict()
        }
        _ => None,
    }
}

/// The key path of `parts` (lowercase up to a map, as written below it) and its kind.
fn resolve(shape: &Dict, parts: &[&str]) -> (Vec<String>, Kind) {
    let mut path: Vec<String> = Vec::with_capacity(parts.len());
    let mut at: Option<Value> = None;
    let mut in_map = false;
    for (i, part) in parts.iter().enumerate() {
        if in_map {
            // The entry's name, as written; a section-valued entry resolves on below it.
            path.push((*part).to_owned());
            at = entry_shape(&path[..path.len() - 1]).map(Value::from);
            in_map = at.is_none();
            continue;
        }
        let key = part.to_ascii_lowercase();
        at = match (i, &at) {
            (0, _) => shape.get(&key).cloned(),
            (_, Some(Value::Dict(_, dict))) => dict.get(&key).cloned(),
            _ => None,
        };
        if let Some(Value::Dict(_, dict)) = &at {
            in_map |= dict.is_empty();
        }
        path.push(key);
    }
    let at = at.as_ref();
    let kind = match at {
        Some(Value::Num(..)) => Kind::Number,
        Some(Value::Bool(..)) => Kind::Bool,
        Some(Value::Array(..)) => Kind::List,
        Some(Value::Dict(_, dict)) if dict.is_empty() => Kind::Map,
        Some(Value::Dict(..)) => Kind::Section,
        _ => Kind::Text,
    };
    (path, kind)
}

fn typed(name: &str, raw: &str, kind: Kind) -> Result<Value, String> {
    // figment's value parser (its `env` feature): `[1, 2]`, `{k = "v"}`, TOML-like.
    let parsed = || raw.parse::<Value>().expect("parsing a value is infallible");
    let value = match kind {
        Kind::Text => Value::from(raw.to_owned()),
        Kind::Number => {
            // Not figment's number parser: it reads short decimals as f32 (0.45 → 0.4499…).
            let t = raw.trim();
            t.parse::<u64>()
                .map(Value::from)
                .or_else(|_| t.parse::<i64>().map(Value::from))
                .or_else(|_| t.parse::<f64>().map(Value::from))
                .map_err(|_| format!("{name}={raw:?}: expected a number"))?
        }
        Kind::Bool => Value::from(raw.trim().to_owned())
            .to_bool_lossy()
            .map(Value::from)
            .ok_or_else(|| format!("{name}={raw:?}: expected true or false"))?,
        Kind::List => match parsed() {
            list @ Value::Array(..) => list,
            _ => return Err(format!("{name}={raw:?}: expected a list, written [a, b, c]")),
        },
        Kind::Map => match parsed() {
            map @ Value::Dict(..) => map,
            _ => return Err(format!("{name}={raw:?}: expected a table, written {{key = \"value\"}}")),
        },
        Kind::Section => {
            return Err(format!("{name} names a section; set its keys as {name}__<KEY>"));
        }
    };
    Ok(value)
}

/// Puts `value` at `path` in `dict`, creating the dictionaries on the way.
fn insert(dict: &mut Dict, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("a variable names at least one key");
    let mut at = dict;
    for key in parents {
        let entry = at.entry(key.clone()).or_insert_with(|| Value::from(Dict::new()));
        if !matches!(entry, Value::Dict(..)) {
            *entry = Value::from(Dict::new());
        }
        let Value::Dict(_, inner) = entry else { unreachable!("just made a dictionary") };
        at = inner;
    }
    at.insert(last.clone(), value);
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("`CONVMSG_*` environment variable").interpolater(|_profile, keys| {
            format!("{PREFIX}{}", keys.iter().map(|k| k.to_ascii_uppercase()).collect::<Vec<_>>().join("__"))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Ok(Profile::Default.collect(self.settings().map_err(Error::from)?))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use figment::value::Value;

    use super::super::{Config, Overrides};
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, Box<Error>> {
        Config::load_with_env(None, vars(pairs), &Overrides::default())
    }

    #[test]
    fn the_bootstrap_token_variable_sets_the_bootstrap_token() {
        let c = load(&[("CONVMSG_BOOTSTRAP_TOKEN", "abc")]).unwrap();
        assert_eq!(c.bootstrap_token.as_deref(), Some("abc"));
    }

    #[test]
    fn a_token_of_digits_or_a_word_like_true_stays_the_string_it_was() {
        for token in ["0123456789", "true", "[x", "1.5"] {
            let c = load(&[("CONVMSG_BOOTSTRAP_TOKEN", token)]).unwrap();
            assert_eq!(c.bootstrap_token.as_deref(), Some(token));
        }
    }

    #[test]
    fn section_keys_take_a_double_underscore_and_are_typed_by_the_setting() {
        let c = load(&[
            ("CONVMSG_DISPATCH__MAX_IN_PROGRESS_REQUESTS", "100"),
            ("CONVMSG_DISPATCH__ENABLED", "no"),
            ("CONVMSG_DISPATCH__RETRY_JITTER", "0.5"),
            ("CONVMSG_DISPATCH__RETRY_SCHEDULE_MS", "[100, 200]"),
            ("CONVMSG_PROVIDERS__TWILIO__AUTH_TOKEN", "42"),
            ("CONVMSG_LOG__FORMAT", "pretty"),
        ])
        .unwrap();
        assert_eq!(c.dispatch.max_in_progress_requests, 100);
        assert!(!c.dispatch.enabled);
        assert_eq!(c.dispatch.retry_jitter, 0.5);
        assert_eq!(c.dispatch.retry_schedule_ms, vec![100, 200]);
        assert_eq!(c.providers.twilio.auth_token.as_deref(), Some("42"));
        assert_eq!(c.log.format, super::super::LogFormat::Pretty);
    }

    #[test]
    fn receipt_secrets_are_set_per_tenant_and_per_channel_with_the_names_kept_as_written() {
        let c = load(&[
            ("CONVMSG_RECEIPTS__TENANTS__Acme__TWILIO_AUTH_TOKEN", "tok"),
            ("CONVMSG_RECEIPTS__TENANTS__Acme__CHANNELS__Wa_EU__WHATSAPP_APP_SECRET", "eu"),
        ])
        .unwrap();
        let acme = &c.receipts.tenants["Acme"];
        assert_eq!(acme.twilio_auth_token.as_deref(), Some("tok"));
        assert_eq!(acme.channels["Wa_EU"].whatsapp_app_secret.as_deref(), Some("eu"));
    }

    #[test]
    fn a_map_entry_keeps_the_case_it_was_written_in() {
        let c = load(&[("CONVMSG_PROVIDERS__WEBHOOK__SECRETS__OrderSms", "whsec_c2VjcmV0")]).unwrap();
        assert_eq!(c.providers.webhook.secrets.get("OrderSms").map(String::as_str), Some("whsec_c2VjcmV0"));
    }

    #[test]
    fn a_tenant_entry_keeps_its_name_and_its_keys_are_case_insensitive() {
        let c = load(&[
            ("CONVMSG_PROVIDERS__WEBHOOK__TENANTS__acme__SECRET", "whsec_YWNtZQ=="),
            ("CONVMSG_PROVIDERS__WEBHOOK__TENANTS__acme__SECRETS__OrderSms", "whsec_b3JkZXI="),
        ])
        .unwrap();
        let acme = &c.providers.webhook.tenants["acme"];
        assert_eq!(acme.secret.as_deref(), Some("whsec_YWNtZQ=="));
        assert_eq!(acme.secrets.get("OrderSms").map(String::as_str), Some("whsec_b3JkZXI="));
    }

    /// Every key the defaults have (so every key of `config/convmsg.example.toml`) can be
    /// set from the environment, and the value set is the value loaded.
    #[test]
    fn every_setting_can_be_set_from_the_environment() {
        fn leaves(prefix: &[String], value: &Value, out: &mut Vec<(Vec<String>, Value)>) {
            match value {
                Value::Dict(_, dict) if !dict.is_empty() => {
                    for (k, v) in dict {
                        let mut path = prefix.to_vec();
                        path.push(k.clone());
                        leaves(&path, v, out);
                    }
                }
                _ => out.push((prefix.to_vec(), value.clone())),
            }
        }
        let shape = shape();
        let mut all = Vec::new();
        for (key, value) in shape.iter().filter(|(k, _)| settable(&shape, k)) {
            leaves(std::slice::from_ref(key), value, &mut all);
        }
        assert!(all.len() > 40, "{} settings", all.len());
        for (path, default) in all {
            let dotted = path.join(".");
            let name = format!("CONVMSG_{}", path.join("__").to_ascii_uppercase());
            let (raw, expected) = match (dotted.as_str(), &default) {
                ("log.format", _) => ("pretty".to_owned(), Value::from("pretty")),
                ("telemetry.otlp_protocol", _) => ("http/protobuf".to_owned(), Value::from("http/protobuf")),
                ("providers.webhook.tenants", _) => {
                    let entry = Dict::from([
                        ("secret".to_owned(), Value::from("whsec_dg==")),
                        ("secrets".to_owned(), Value::from(Dict::new())),
                    ]);
                    (
                        "{acme = { secret = \"whsec_dg==\" }}".to_owned(),
                        Value::from(Dict::from([("acme".to_owned(), Value::from(entry))])),
                    )
                }
                ("receipts.tenants", _) => {
                    let entry = Dict::from([
                        ("twilio_auth_token".to_owned(), Value::from("tok")),
                        ("channels".to_owned(), Value::from(Dict::new())),
                    ]);
                    (
                        "{acme = { twilio_auth_token = \"tok\" }}".to_owned(),
                        Value::from(Dict::from([("acme".to_owned(), Value::from(entry))])),
                    )
                }
                ("providers.webhook.allowed_networks" | "events.allowed_networks", _) => (
                    "[\"10.0.0.0/8\", \"192.168.1.0/24\"]".to_owned(),
                    Value::from(vec!["10.0.0.0/8", "192.168.1.0/24"]),
                ),
                (_, Value::Bool(_, b)) => ((!b).to_string(), Value::from(!b)),
                (_, Value::Num(_, n)) => match n.to_f64() {
                    Some(float) => ((float + 0.25).to_string(), Value::from(float + 0.25)),
                    None => {
                        let next = n.to_u128_lossy().unwrap() + 1;
                        (next.to_string(), Value::from(next))
                    }
                },
                (_, Value::Array(..)) => ("[7, 8]".to_owned(), Value::from(vec![7u64, 8])),
                (_, Value::Dict(..)) => {
                    ("{Entry = \"v\"}".to_owned(), Value::from(Dict::from([("Entry".to_owned(), Value::from("v"))])))
                }
                _ => ("from-env".to_owned(), Value::from("from-env")),
            };
            let loaded = load(&[(name.as_str(), raw.as_str())]).unwrap_or_else(|e| panic!("{name}={raw}: {e}"));
            let got = Value::serialize(&loaded).unwrap().find(&dotted).unwrap();
            let number = |v: &Value| match v {
                Value::Num(_, n) => n.to_f64().or_else(|| n.to_u128_lossy().map(|u| u as f64)),
                _ => None,
            };
            let same = match (&got, &expected) {
                (Value::Num(..), Value::Num(..)) => number(&got) == number(&expected),
                (Value::Array(_, a), Value::Array(_, b)) => {
                    a.iter().map(number).collect::<Vec<_>>() == b.iter().map(number).collect::<Vec<_>>()
                }
                _ => got == expected,
            };
            assert!(same, "{name}={raw} loaded {got:?} at {dotted}");
        }
    }

    #[test]
    fn a_misspelt_key_inside_a_section_is_an_error_naming_the_variable() {
        let err = load(&[("CONVMSG_DISPATCH__MAX_IN_PROGRES", "5")]).unwrap_err().to_string();
        assert!(err.contains("max_in_progres") && err.contains("CONVMSG_DISPATCH__MAX_IN_PROGRES"), "{err}");
    }

    #[test]
    fn a_value_that_does_not_fit_the_setting_is_an_error_naming_the_variable() {
        let cases = [
            ("CONVMSG_DISPATCH__LEASE_MS", "30s", "expected a number"),
            ("CONVMSG_DISPATCH__ENABLED", "maybe", "expected true or false"),
            ("CONVMSG_DISPATCH__RETRY_SCHEDULE_MS", "1000", "expected a list"),
            ("CONVMSG_DISPATCH", "{}", "names a section"),
        ];
        for (name, raw, expected) in cases {
            let err = load(&[(name, raw)]).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(expected), "{name}={raw}: {err}");
        }
        // The value itself is not quoted: configuration values may be secrets.
        let err = load(&[("CONVMSG_LOG__FORMAT", "xml")]).unwrap_err().to_string();
        assert!(err.contains("CONVMSG_LOG__FORMAT") && err.contains("pretty") && !err.contains("xml"), "{err}");
    }

    #[test]
    fn an_empty_value_counts_as_unset() {
        let c = load(&[("CONVMSG_BOOTSTRAP_TOKEN", ""), ("CONVMSG_DISPATCH__LEASE_MS", "")]).unwrap();
        assert_eq!(c.bootstrap_token, None);
        assert_eq!(c.dispatch.lease_ms, 30_000);
    }

    #[test]
    fn other_convmsg_variables_are_left_alone_and_misspelt_ones_are_reported_with_a_hint() {
        let env = vars(&[
            ("CONVMSG_TOKEN", "cm_x"),
            ("CONVMSG_SERVER", "http://127.0.0.1:1"),
            ("CONVMSG_CONFIG", "/nonexistent.toml"),
            ("CONVMSG_PORT", "tcp://10.0.0.1:50051"),
            ("CONVMSG_PORT_50051_TCP_ADDR", "10.0.0.1"),
            ("CONVMSG_SERVICE_HOST", "10.0.0.1"),
            ("CONVMSG_TEST_DATABASE", "postgres"),
            ("CONVMSG_DISPATCH_LEASE_MS", "5"),
            ("CONVMSG_BOOTSTRAP_TOKN", "x"),
            ("CONVMSG_DISPATCH__", "5"),
            ("HOME", "/root"),
        ]);
        let c = Config::load_with_env(None, env.clone(), &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            EnvLayer::from_vars(env).ignored(),
            vec![
                "CONVMSG_BOOTSTRAP_TOKN".to_owned(),
                "CONVMSG_DISPATCH_LEASE_MS (did you mean CONVMSG_DISPATCH__LEASE_MS?)".to_owned(),
                "CONVMSG_DISPATCH__".to_owned(),
            ]
        );
    }

    #[test]
    fn the_environment_wins_over_the_file_and_flags_over_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nbootstrap_token = \"file\"\n[dispatch]\nlease_ms = 7\nclaim_batch = 3\n",
        )
        .unwrap();
        let env = vars(&[
            ("CONVMSG_LISTEN", "127.0.0.1:2"),
            ("CONVMSG_BOOTSTRAP_TOKEN", "env"),
            ("CONVMSG_DISPATCH__LEASE_MS", "8"),
        ]);
        let flags = Overrides { listen: Some("127.0.0.1:3".into()), ..Overrides::default() };
        let c = Config::load_with_env(Some(Path::new(&path)), env, &flags).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3");
        assert_eq!(c.bootstrap_token.as_deref(), Some("env"));
        assert_eq!((c.dispatch.lease_ms, c.dispatch.claim_batch), (8, 3));
    }
}
