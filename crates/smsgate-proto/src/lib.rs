//! smsgate's sans-IO layer: every decision about bytes on a wire, and none
//! of the I/O. Nothing here opens a socket, a file or a database, starts a
//! task, or reads the clock, so all of it can be fuzzed and unit-tested on
//! any input, and the daemon and the simulators share one definition of
//! each format.
//!
//! - [`sms`]: GSM 03.38 / UCS-2, segmentation, the PDU codec, phone numbers;
//! - [`dinstar`]: the Dinstar HTTP API's JSON ([`dinstar::wire`]) and HTTP
//!   Digest ([`dinstar::digest`]);
//! - [`dwg`]: the DWG binary TCP protocol's frames;
//! - [`at`]: AT command framing and what `+CMS`/`+CME` errors mean;
//! - [`http_api`]: the `http` provider kind's templates, replies and callbacks;
//! - [`consent`]: whether a received text is an opt-out or opt-in keyword;
//! - [`recording`]: a conversation written out as text, JSON or CSV;
//! - [`twilio`]: Twilio's Messages API, statuses, errors and signatures;
//! - [`webhook`]: the HMAC signature of a webhook delivery;
//! - [`whatsapp_cloud`]: Meta's WhatsApp Cloud API bodies, replies, errors,
//!   webhook handshake, signature and events;
//! - [`whatsapp_rules`]: WhatsApp's 24-hour window, messaging limit and
//!   templates.
#![forbid(unsafe_code)]

pub mod at;
pub mod consent;
pub mod dinstar;
pub mod dwg;
pub mod http_api;
pub mod recording;
pub mod sms;
pub mod twilio;
pub mod webhook;
pub mod whatsapp_cloud;
pub mod whatsapp_rules;
