//! Dinstar GSM gateways (UC2000 / DWG2000 class) over their JSON HTTP API,
//! the "new-version API" under `/api/`.
//!
//! - [`client`]: [`DinstarClient`], one per gateway: Digest or Basic auth,
//!   TLS with pinning, timeouts, error classification, auth backoff.
//! - [`wire`], [`digest`] (from `smsgate_proto`): request bodies, lenient
//!   reply and push parsers, HTTP Digest (MD5, qop=auth) and Basic.
//! - [`transport`]: [`DinstarTransport`], the [`crate::transport::Transport`]
//!   of a `dinstar` gateway: sends, result and report tracking, port
//!   health, inbound polling and pushes.
//! - [`tls`]: rustls configuration (system roots, pinned fingerprint, or
//!   accept-invalid), with the ring provider passed explicitly.
//!
//! Sources and quirks: `shared/reference/dinstar-api.md`.

pub mod client;
/// TLS set-up now shared by every client; kept under this name for callers.
pub use crate::tls;
pub mod transport;
/// The pure JSON and Digest code, in the proto crate; kept under these
/// names for callers.
pub use smsgate_proto::dinstar::{digest, wire};

pub use client::{AuthScheme, BackoffState, DinstarClient, DinstarClientConfig, DinstarError};
pub use tls::{TlsVerify, parse_fingerprint};
pub use transport::{DinstarTransport, capabilities, client_config, run_ussd};
pub use wire::{
    DeliverStatus, DeliverStatusQuery, DeliveryOutcome, DeviceEvent, Encoding, ExceptionInfo,
    IncomingBatch, IncomingSms, PortInfo, PortInfoType, PushError, PushEvent, PushEventKind,
    RegStatus, RegisterEvent, RegisterState, SendAccepted, SmsResult, SmsStatus, UssdPortStatus,
    UssdReply, parse_push,
};
