//! Vendor adapters against fake vendor servers on loopback (wiremock), each checking the
//! vendor's documented wire format; delivery-receipt parsers and signature checks; provider
//! settings.

mod bounded;
mod helpers;
mod infobip;
mod messagebird;
mod receipts;
mod settings;
mod twilio;
mod vonage;
mod whatsapp;
