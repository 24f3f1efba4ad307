//! Integration tests for SustainBot (placeholder while the suite is written).
