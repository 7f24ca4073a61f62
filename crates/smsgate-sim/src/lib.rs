//! Simulators of the gateways smsgate drives, runnable on their own
//! (`smsgate-sim`, shipped in the .deb) and used by the daemon's tests.
//! They speak the wire formats of `smsgate_proto` and nothing of the
//! daemon's.
#![forbid(unsafe_code)]

pub mod dinstar;
pub mod dwg;
pub mod http_provider;
pub mod modem;
mod tls;
pub mod twilio;
pub mod whatsapp_cloud;
