//! The Salesforce REST bridge: code written against Salesforce's REST API (jsforce,
//! simple-salesforce, plain HTTP) works against convmsg by changing only the instance
//! URL and the token. Served on the one listener, behind the same admission layer as
//! gRPC, calling the same `Service` functions (never a loopback gRPC client).
//!
//! Resources (all under `/services/data`; `vNN.N` is any version from 59.0 up):
//!
//! | path | methods | module |
//! |---|---|---|
//! | `/services/data` | GET, HEAD | `describe` (version list, no token) |
//! | `/services/data/openapi.json` | GET, HEAD | this module (no token) |
//! | `/services/data/vNN.N` | GET, HEAD | `describe` |
//! | `/services/data/vNN.N/actions`, `…/actions/standard`, `…/actions/custom` | GET, HEAD | `describe` |
//! | `/services/data/vNN.N/actions/standard/sendConversationMessages` | GET, HEAD, POST | `describe`, `invoke` |
//! | `/services/data/vNN.N/sobjects/ConvMessageSendRequest/{id}` | GET, HEAD | `sobject` |
//! | `/services/data/vNN.N/query`, `…/queryAll` (`?q=SOQL`), `…/query/{locator}` | GET, HEAD | `query` |
//! | `/services/data/vNN.N/sobjects`, `…/sobjects/ConvMessageSendRequest[/describe]` | GET, HEAD | `sobject_describe` |
//! | `/services/data/vNN.N/sobjects/ConvMessageSendRequest/updated`, `…/deleted` | GET, HEAD | `replication` |
//!
//! This module resolves paths and methods (404 / 405 in Salesforce's shape), checks the
//! token and hands over to the resource's module; `format` renders JSON or XML. REST
//! converts JSON/XML → `SendInput` and records → Salesforce shapes; no rule of the
//! domain lives here.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use http::{HeaderMap, Method, header};

use crate::config::RestConfig;
use crate::domain::principal::Principal;
use crate::service::Service;
use crate::service::auth::Authenticator;

pub mod automatic;
mod describe;
pub mod format;
pub mod invoke;
pub mod locator;
mod query;
mod replication;
mod sobject;
mod sobject_describe;
pub mod xml;

use format::{Format, RestError};

/// The first API version that has the action (spec §2); older ones are 404.
pub const FIRST_VERSION: u16 = 59;
/// The newest version the version list shows (Summer '26). Newer versions are served too.
pub const CURRENT_VERSION: u16 = 67;

/// The bridge's OpenAPI document, served at `/services/data/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// What every handler needs.
pub struct RestState {
    pub service: Service,
    pub auth: Authenticator,
    pub config: RestConfig,
}

/// The bridge's routes. No fallback (the listener's is `fallback` below) and no layers:
/// `server::app` puts admission and telemetry around them with gRPC's.
pub fn router(service: Service, auth: Authenticator, config: RestConfig) -> Router {
    let state = Arc::new(RestState { service, auth, config });
    Router::new()
        .route("/services/data", any(dispatch))
        .route("/services/data/", any(dispatch))
        .route("/services/data/{*path}", any(dispatch))
        .with_state(state)
}

/// The answer for a path nothing serves: gRPC UNIMPLEMENTED to gRPC callers, Salesforce's
/// 404 `NOT_FOUND` (JSON or XML, as accepted) to everyone else.
pub async fn fallback(request: Request) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("").into_http::<Body>();
    }
    RestError::not_found().render(Format::of_accept(request.headers()))
}

/// An API version from a path segment such as `v65.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    major: u16,
    minor: u8,
}

impl Version {
    /// `vNN.N` (two or three digits, one decimal); `None` when malformed.
    pub fn parse(segment: &str) -> Option<Version> {
        let (major, minor) = segment.strip_prefix('v')?.split_once('.')?;
        let digits = |s: &str, len: std::ops::RangeInclusive<usize>| {
            len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(major, 2..=3) || !digits(minor, 1..=1) {
            return None;
        }
        Some(Version { major: major.parse().ok()?, minor: minor.parse().ok()? })
    }

    pub fn new(major: u16) -> Version {
        Version { major, minor: 0 }
    }

    /// `/services/data/v65.0`.
    pub fn base(self) -> String {
        format!("/services/data/v{self}")
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A resource the bridge serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The version list (public).
    Versions,
    /// The OpenAPI document (public).
    OpenApi,
    /// Everything under `/services/data/vNN.N` (token required).
    Api(Version, Api),
}

/// A resource under `/services/data/vNN.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    Resources,
    Actions,
    StandardActions,
    CustomActions,
    Action,
    Record(String),
    /// `…/query` or `…/queryAll` (`all`), with the locator of a query-more page.
    Query {
        all: bool,
        locator: Option<String>,
    },
    /// `…/sobjects`.
    SObjects,
    /// `…/sobjects/ConvMessageSendRequest`.
    SObject,
    /// `…/sobjects/ConvMessageSendRequest/describe`.
    Describe,
    /// `…/sobjects/ConvMessageSendRequest/updated`.
    Updated,
    /// `…/sobjects/ConvMessageSendRequest/deleted`.
    Deleted,
}

/// The action's name in paths and results.
pub const ACTION_NAME: &str = "sendConversationMessages";
/// The sObject of the request records.
pub const SOBJECT: &str = "ConvMessageSendRequest";

impl Resource {
    /// The resource a path names, if any (a trailing `/` is ignored; the sObject name is
    /// case-insensitive, as Salesforce's).
    pub fn resolve(path: &str) -> Option<Resource> {
        let rest = path.strip_prefix("/services/data")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Some(Resource::Versions);
        }
        let segments: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
        if segments == ["openapi.json"] {
            return Some(Resource::OpenApi);
        }
        let version = Version::parse(segments[0]).filter(|v| *v >= Version::new(FIRST_VERSION))?;
        let api = match &segments[1..] {
            [] => Api::Resources,
            ["actions"] => Api::Actions,
            ["actions", "standard"] => Api::StandardActions,
            ["actions", "custom"] => Api::CustomActions,
            ["actions", "standard", ACTION_NAME] => Api::Action,
            ["query"] => Api::Query { all: false, locator: None },
            ["queryAll"] => Api::Query { all: true, locator: None },
            ["query", locator] if !locator.is_empty() => {
                Api::Query { all: false, locator: Some((*locator).to_owned()) }
            }
            ["queryAll", locator] if !locator.is_empty() => {
                Api::Query { all: true, locator: Some((*locator).to_owned()) }
            }
            ["sobjects"] => Api::SObjects,
            ["sobjects", object] if object.eq_ignore_ascii_case(SOBJECT) => Api::SObject,
            ["sobjects", object, "describe"] if object.eq_ignore_ascii_case(SOBJECT) => Api::Describe,
            ["sobjects", object, "updated"] if object.eq_ignore_ascii_case(SOBJECT) => Api::Updated,
            ["sobjects", object, "deleted"] if object.eq_ignore_ascii_case(SOBJECT) => Api::Deleted,
            ["sobjects", object, id] if object.eq_ignore_ascii_case(SOBJECT) && !id.is_empty() => {
                Api::Record((*id).to_owned())
            }
            _ => return None,
        };
        Some(Resource::Api(version, api))
    }

    /// The route template, for span names and metric labels (never the raw path).
    pub fn route_template(&self) -> &'static str {
        match self {
            Resource::Versions => "/services/data",
            Resource::OpenApi => "/services/data/openapi.json",
            Resource::Api(_, api) => match api {
                Api::Resources => "/services/data/{version}",
                Api::Actions => "/services/data/{version}/actions",
                Api::StandardActions => "/services/data/{version}/actions/standard",
                Api::CustomActions => "/services/data/{version}/actions/custom",
                Api::Action => "/services/data/{version}/actions/standard/sendConversationMessages",
                Api::Record(_) => "/services/data/{version}/sobjects/ConvMessageSendRequest/{id}",
                Api::Query { all: false, locator: None } => "/services/data/{version}/query",
                Api::Query { all: true, locator: None } => "/services/data/{version}/queryAll",
                Api::Query { all: false, locator: Some(_) } => "/services/data/{version}/query/{locator}",
                Api::Query { all: true, locator: Some(_) } => "/services/data/{version}/queryAll/{locator}",
                Api::SObjects => "/services/data/{version}/sobjects",
                Api::SObject => "/services/data/{version}/sobjects/ConvMessageSendRequest",
                Api::Describe => "/services/data/{version}/sobjects/ConvMessageSendRequest/describe",
                Api::Updated => "/services/data/{version}/sobjects/ConvMessageSendRequest/updated",
                Api::Deleted => "/services/data/{version}/sobjects/ConvMessageSendRequest/deleted",
            },
        }
    }

    /// The methods allowed, as an `Allow` header value.
    pub fn allow(&self) -> &'static str {
        match self {
            Resource::Api(_, Api::Action) => "GET, HEAD, POST",
            _ => "GET, HEAD",
        }
    }

    fn allows(&self, method: &Method) -> bool {
        *method == Method::GET || *method == Method::HEAD || (*method == Method::POST && self.allow().contains("POST"))
    }
}

/// The caller's principal from `Authorization: Bearer …` — or `OAuth …`, the scheme
/// Salesforce also accepts and older clients send; 401 otherwise.
fn authenticate(state: &RestState, headers: &HeaderMap) -> Result<Principal, RestError> {
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let bearer = header.and_then(|h| h.strip_prefix("OAuth ")).map(|token| format!("Bearer {token}"));
    Ok(state.auth.authenticate(bearer.as_deref().or(header))?)
}

async fn dispatch(State(state): State<Arc<RestState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let format = Format::of_accept(&parts.headers);
    let response = match serve(&state, &parts, body, format).await {
        Ok(response) => response,
        Err(error) => error.render(format),
    };
    if parts.method == Method::HEAD {
        // The headers of the GET (Content-Length included), without its body.
        let (head, _) = response.into_parts();
        return Response::from_parts(head, Body::empty());
    }
    response
}

async fn serve(
    state: &RestState,
    parts: &http::request::Parts,
    body: Body,
    format: Format,
) -> Result<Response, RestError> {
    let resource = Resource::resolve(parts.uri.path()).ok_or_else(RestError::not_found)?;
    if !resource.allows(&parts.method) {
        return Err(RestError::method_not_allowed(&parts.method, resource.allow()));
    }
    let (version, api) = match resource {
        // Public, static documents.
        Resource::Versions => return Ok(describe::versions().render(format)),
        Resource::OpenApi => return Ok(openapi()),
        Resource::Api(version, api) => (version, api),
    };
    let principal = authenticate(state, &parts.headers)?;
    let reply = match api {
        Api::Resources => describe::resources(version),
        Api::Actions => describe::actions(version),
        Api::StandardActions => describe::standard_actions(version),
        Api::CustomActions => describe::custom_actions(),
        Api::Action if parts.method == Method::POST => invoke::invoke(state, &principal, &parts.headers, body).await?,
        Api::Action => return Ok(describe::describe(&parts.headers, format)),
        Api::Record(id) => {
            return sobject::get(state, &principal, version, &id, parts.uri.query(), &parts.headers, format).await;
        }
        Api::Query { locator: None, .. } => {
            query::start(state, &principal, version, parts.uri.query(), &parts.headers).await?
        }
        Api::Query { locator: Some(locator), .. } => {
            query::more(state, &principal, version, &locator, &parts.headers).await?
        }
        Api::SObjects => return Ok(sobject_describe::global(version, &parts.headers, format)),
        Api::SObject => return sobject_describe::basic(state, &principal, version, &parts.headers, format).await,
        Api::Describe => return Ok(sobject_describe::describe(version, &parts.headers, format)),
        Api::Updated => replication::updated(state, &principal, parts.uri.query()).await?,
        Api::Deleted => replication::deleted(state, &principal, parts.uri.query()).await?,
    };
    Ok(reply.render(format))
}

fn openapi() -> Response {
    let mut response = Response::new(Body::from(OPENAPI_JSON));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(format::JSON_CONTENT_TYPE));
    headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from(OPENAPI_JSON.len()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_59_0_up_resolve_and_older_or_malformed_ones_do_not() {
        let action =
            |v: &str| Resource::resolve(&format!("/services/data/{v}/actions/standard/sendConversationMessages"));
        assert_eq!(action("v59.0"), Some(Resource::Api(Version::new(59), Api::Action)));
        assert_eq!(action("v67.0"), Some(Resource::Api(Version::new(67), Api::Action)));
        assert_eq!(action("v120.0"), Some(Resource::Api(Version::new(120), Api::Action)));
        for bad in ["v58.0", "v20.0", "v59", "59.0", "v59.00", "v5a.0", "vv59.0", "v1059.0", ""] {
            assert_eq!(action(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_resource_resolves_and_unknown_paths_do_not() {
        let api = |api| Some(Resource::Api(Version::new(65), api));
        assert_eq!(Resource::resolve("/services/data"), Some(Resource::Versions));
        assert_eq!(Resource::resolve("/services/data/"), Some(Resource::Versions));
        assert_eq!(Resource::resolve("/services/data/openapi.json"), Some(Resource::OpenApi));
        assert_eq!(Resource::resolve("/services/data/v65.0/"), api(Api::Resources));
        assert_eq!(Resource::resolve("/services/data/v65.0/actions"), api(Api::Actions));
        assert_eq!(Resource::resolve("/services/data/v65.0/actions/standard"), api(Api::StandardActions));
        assert_eq!(Resource::resolve("/services/data/v65.0/actions/custom"), api(Api::CustomActions));
        assert_eq!(
            Resource::resolve("/services/data/v65.0/sobjects/convmessagesendrequest/1sr000000000001"),
            api(Api::Record("1sr000000000001".into()))
        );
        assert_eq!(Resource::resolve("/services/data/v65.0/query/"), api(Api::Query { all: false, locator: None }));
        assert_eq!(
            Resource::resolve("/services/data/v65.0/queryAll/01gX-2000"),
            api(Api::Query { all: true, locator: Some("01gX-2000".into()) })
        );
        assert_eq!(Resource::resolve("/services/data/v65.0/sobjects"), api(Api::SObjects));
        assert_eq!(Resource::resolve("/services/data/v65.0/sobjects/ConvMessageSendRequest"), api(Api::SObject));
        assert_eq!(
            Resource::resolve("/services/data/v65.0/sobjects/ConvMessageSendRequest/describe/"),
            api(Api::Describe)
        );
        assert_eq!(
            Resource::resolve("/services/data/v65.0/sobjects/ConvMessageSendRequest/updated/"),
            api(Api::Updated)
        );
        assert_eq!(
            Resource::resolve("/services/data/v65.0/sobjects/ConvMessageSendRequest/deleted"),
            api(Api::Deleted)
        );
        for unknown in [
            "/services/data/v65.0/actions/standard/emailSimple",
            "/services/data/v65.0/sobjects/Account/001000000000001",
            "/services/data/v65.0/sobjects/Account",
            "/services/data/v65.0/sobjects/Account/describe",
            "/services/data/v65.0/query/a/b",
            "/services/data/v65.0/sobjects/ConvMessageSendRequest//",
            "/services/data/v65.0/actions/standard/sendConversationMessages/x",
            "/services/database",
            "/services/data//actions",
        ] {
            assert_eq!(Resource::resolve(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn only_the_action_takes_post() {
        let action = Resource::Api(Version::new(60), Api::Action);
        assert!(action.allows(&Method::POST) && action.allows(&Method::HEAD));
        let record = Resource::Api(Version::new(60), Api::Record("x".into()));
        assert!(record.allows(&Method::GET) && !record.allows(&Method::POST) && !record.allows(&Method::DELETE));
        assert_eq!(record.allow(), "GET, HEAD");
    }

    #[test]
    fn every_path_of_the_openapi_document_is_served() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("docs/openapi.json is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.len() >= 8);
        for path in paths.keys() {
            if path.starts_with("/receipts/") {
                let concrete = path.replace("{channel}", "0MjXX0000000001AAA");
                let served = crate::receipts::route_template(&concrete);
                assert!(served.is_some_and(|t| t == path.as_str()), "{path} is documented but not served");
                continue;
            }
            let concrete =
                path.replace("{version}", "v65.0").replace("{id}", "1sr000000000001").replace("{locator}", "01gX-2000");
            assert!(Resource::resolve(&concrete).is_some(), "{path} is documented but not served");
        }
    }
}
