//! Simulators of the gateways smsgate drives, runnable on their own
//! (`smsgate-sim`) and used by the tests.

pub mod dinstar;
pub mod dwg;
pub mod modem;
