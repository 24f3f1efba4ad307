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
mod crash;
mod dashboards;
mod dropin;
mod engine;
mod failure;
mod filter;
mod governed;
mod helpers;
mod legacy;
mod legacy_audit;
mod logging;
mod ops;
mod properties;
mod runs;
mod scrape;
mod slack;
mod slack_commands;
mod store;
mod validate;
mod workflows;
