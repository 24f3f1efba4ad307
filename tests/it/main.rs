//! Integration tests for SustainBot: a real server per test, on an ephemeral port in a temporary
//! directory, exercised over HTTP against `../shared/API-CONTRACT.md`.

mod agreement;
mod ai;
mod approval;
mod audit;
mod audit_api;
mod auth;
mod cli;
mod compat;
mod connections;
mod crash;
mod dropin;
mod engine;
mod failure;
mod filter;
mod governed;
mod helpers;
mod holes;
mod legacy;
mod legacy_audit;
mod log_secrets;
mod logging;
mod openapi;
mod openapi_statuses;
mod ops;
mod properties;
mod runs;
mod secrets;
mod shutdown;
mod slack;
mod slack_commands;
mod store;
mod traces;
mod validate;
mod workflows;
