//! Integration tests for SustainBot: a real server per test, on an ephemeral port in a temporary
//! directory, exercised over HTTP against `../shared/API-CONTRACT.md`.

mod agreement;
mod ai;
mod apikeys;
mod approval;
mod audit;
mod audit_api;
mod auth;
mod cli;
// mod cluster; (enabled with the PostgreSQL test database helper)
mod compat;
mod connections;
mod crash;
mod dashboards;
mod dropin;
mod engine;
mod failure;
mod filter;
mod governed;
mod helpers;
mod holes;
mod identity;
mod legacy;
mod legacy_audit;
mod log_secrets;
mod logging;
mod openapi;
mod openapi_statuses;
mod ops;
mod policy;
mod properties;
mod rate_limit;
mod runs;
mod scrape;
mod secrets;
mod shutdown;
mod slack;
mod slack_commands;
mod store;
mod tamper;
mod trace_ids;
mod traces;
mod validate;
mod workflows;
