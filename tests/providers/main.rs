//! Vendor adapters against fake vendor servers on loopback (wiremock), each checking the
//! vendor's documented wire format; delivery-receipt parsers and signature checks; provider
//! settings; the configuration loader.

mod bounded;
#[path = "../common/fake_smsc.rs"]
mod fake_smsc;
mod helpers;
mod infobip;
mod loader;
mod messagebird;
mod receipts;
mod settings;
mod smpp;
mod twilio;
mod vonage;
mod whatsapp;
