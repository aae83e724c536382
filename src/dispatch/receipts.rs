//! Delivery receipts from providers (being written).
