//! API errors: a machine-readable reason, a message a person can act on, and for
//! invalid objects the field causes. They cross gRPC as a status whose details hold an
//! encoded `meta.v1.Status`, so every client gets the reason back intact.

use std::fmt;

use prost::Message as _;

use crate::codec::FieldError;
use crate::meta::v1::{Status, StatusCause, StatusDetails};
use crate::resource::KindInfo;

/// Why a call failed, as Kubernetes names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NotFound,
    AlreadyExists,
    Conflict,
    Invalid,
    BadRequest,
    /// A resourceVersion or continue token older than what the server still has.
    Expired,
    Gone,
    Forbidden,
    Unauthorized,
    Timeout,
    ServiceUnavailable,
    InternalError,
    MethodNotAllowed,
    TooManyRequests,
    Unknown,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Invalid => "Invalid",
            Reason::BadRequest => "BadRequest",
            Reason::Expired => "Expired",
            Reason::Gone => "Gone",
            Reason::Forbidden => "Forbidden",
            Reason::Unauthorized => "Unauthorized",
            Reason::Timeout => "Timeout",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::InternalError => "InternalError",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::Unknown => "Unknown",
        }
    }

    fn parse(s: &str) -> Reason {
        ALL_REASONS.iter().copied().find(|r| r.as_str() == s).unwrap_or(Reason::Unknown)
    }

    /// The HTTP status Kubernetes answers with, kept in Status.code.
    pub fn http_code(self) -> i32 {
        match self {
            Reason::NotFound => 404,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Invalid => 422,
            Reason::BadRequest => 400,
            Reason::Expired | Reason::Gone => 410,
            Reason::Forbidden => 403,
            Reason::Unauthorized => 401,
            Reason::Timeout => 504,
            Reason::ServiceUnavailable => 503,
            Reason::MethodNotAllowed => 405,
            Reason::TooManyRequests => 429,
            Reason::InternalError | Reason::Unknown => 500,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Reason::NotFound => Code::NotFound,
            Reason::AlreadyExists => Code::AlreadyExists,
            Reason::Conflict => Code::Aborted,
            Reason::Invalid | Reason::BadRequest => Code::InvalidArgument,
            Reason::Expired | Reason::Gone => Code::OutOfRange,
            Reason::Forbidden => Code::PermissionDenied,
            Reason::Unauthorized => Code::Unauthenticated,
            Reason::Timeout => Code::DeadlineExceeded,
            Reason::ServiceUnavailable => Code::Unavailable,
            Reason::MethodNotAllowed => Code::Unimplemented,
            Reason::TooManyRequests => Code::ResourceExhausted,
            Reason::InternalError | Reason::Unknown => Code::Internal,
        }
    }

    fn from_grpc_code(code: tonic::Code) -> Reason {
        use tonic::Code;
        match code {
            Code::NotFound => Reason::NotFound,
            Code::AlreadyExists => Reason::AlreadyExists,
            Code::Aborted => Reason::Conflict,
            Code::InvalidArgument => Reason::BadRequest,
            Code::OutOfRange => Reason::Expired,
            Code::PermissionDenied => Reason::Forbidden,
            Code::Unauthenticated => Reason::Unauthorized,
            Code::DeadlineExceeded => Reason::Timeout,
            Code::Unavailable => Reason::ServiceUnavailable,
            Code::Unimplemented => Reason::MethodNotAllowed,
            Code::ResourceExhausted => Reason::TooManyRequests,
            Code::Internal => Reason::InternalError,
            _ => Reason::Unknown,
        }
    }
}

const ALL_REASONS: &[Reason] = &[
    Reason::NotFound,
    Reason::AlreadyExists,
    Reason::Conflict,
    Reason::Invalid,
    Reason::BadRequest,
    Reason::Expired,
    Reason::Gone,
    Reason::Forbidden,
    Reason::Unauthorized,
    Reason::Timeout,
    Reason::ServiceUnavailable,
    Reason::InternalError,
    Reason::MethodNotAllowed,
    Reason::TooManyRequests,
];

/// A failed API call.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// Boxed so that `Result<T, ApiError>` stays small on the happy path.
    pub status: Box<Status>,
}

impl std::error::Error for ApiError {}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status.message)
    }
}

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        ApiError {
            status: Box::new(Status {
                status: "Failure".to_string(),
                message: message.into(),
                reason: reason.as_str().to_string(),
                details: None,
                code: reason.http_code(),
            }),
        }
    }

    fn with_details(mut self, info: &KindInfo, name: &str) -> Self {
        self.status.details = Some(StatusDetails {
            name: name.to_string(),
            group: info.group.to_string(),
            kind: info.plural.to_string(),
            ..Default::default()
        });
        self
    }

    pub fn reason(&self) -> Reason {
        Reason::parse(&self.status.reason)
    }

    pub fn message(&self) -> &str {
        &self.status.message
    }

    pub fn is(&self, reason: Reason) -> bool {
        self.reason() == reason
    }

    /// The field causes of an Invalid error.
    pub fn causes(&self) -> &[StatusCause] {
        self.status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or(&[])
    }

    pub fn not_found(info: &KindInfo, name: &str) -> Self {
        ApiError::new(Reason::NotFound, format!("{} \"{name}\" not found", info.qualified_plural()))
            .with_details(info, name)
    }

    pub fn already_exists(info: &KindInfo, name: &str) -> Self {
        ApiError::new(Reason::AlreadyExists, format!("{} \"{name}\" already exists", info.qualified_plural()))
            .with_details(info, name)
    }

    /// A compare-and-swap lost: the object changed since the caller read it.
    pub fn conflict(info: &KindInfo, name: &str, why: &str) -> Self {
        ApiError::new(
            Reason::Conflict,
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", info.qualified_plural()),
        )
        .with_details(info, name)
    }

    /// The object is invalid; one cause per field error.
    pub fn invalid(info: &KindInfo, name: &str, errors: &[FieldError]) -> Self {
        let list = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        let summary = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let mut error = ApiError::new(Reason::Invalid, format!("{} \"{name}\" is invalid: {summary}", info.kind))
            .with_details(info, name);
        if let Some(details) = error.status.details.as_mut() {
            details.causes = errors
                .iter()
                .map(|e| StatusCause {
                    reason: "FieldValueInvalid".to_string(),
                    message: e.message.clone(),
                    field: e.path.clone(),
                })
                .collect();
        }
        error
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(Reason::BadRequest, message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(Reason::Expired, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(Reason::InternalError, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(Reason::ServiceUnavailable, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(Reason::Forbidden, message)
    }

    /// Reads an error back from a gRPC status. A status without our details (a
    /// transport failure, an unreachable server) keeps its message under the reason its
    /// code implies.
    pub fn from_grpc(status: &tonic::Status) -> Self {
        if let Ok(decoded) = Status::decode(status.details())
            && !decoded.reason.is_empty()
        {
            return ApiError { status: Box::new(decoded) };
        }
        ApiError::new(Reason::from_grpc_code(status.code()), status.message().to_string())
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> tonic::Status {
        let code = error.reason().grpc_code();
        let details = error.status.encode_to_vec();
        tonic::Status::with_details(code, error.status.message, details.into())
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        ApiError::from_grpc(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::kinds;

    #[test]
    fn round_trips_through_grpc() {
        let error =
            ApiError::invalid(&kinds::POD, "web", &[FieldError::new("spec.containers[0].image", "Required value")]);
        assert_eq!(error.message(), "Pod \"web\" is invalid: spec.containers[0].image: Required value");
        let status: tonic::Status = error.clone().into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let back = ApiError::from_grpc(&status);
        assert_eq!(back, error);
        assert_eq!(back.reason(), Reason::Invalid);
        assert_eq!(back.causes()[0].field, "spec.containers[0].image");
    }

    #[test]
    fn plain_grpc_statuses_map_to_reasons() {
        let status = tonic::Status::unavailable("connection refused");
        let error = ApiError::from_grpc(&status);
        assert_eq!(error.reason(), Reason::ServiceUnavailable);
        assert_eq!(error.message(), "connection refused");
    }

    #[test]
    fn messages_read_like_kubernetes() {
        assert_eq!(ApiError::not_found(&kinds::DEPLOYMENT, "web").message(), "deployments.apps \"web\" not found");
        assert_eq!(ApiError::already_exists(&kinds::POD, "a").message(), "pods \"a\" already exists");
    }
}
