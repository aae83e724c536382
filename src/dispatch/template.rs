//! Message templates per locale (being written).
