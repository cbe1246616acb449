//! End-to-end tests: the real `forlop` binary, driven over HTTP, WebSocket and its CLI.
//!
//! Each test starts its own server (`forlop serve`) on a free loopback port with its own
//! temporary data directory, so tests run in parallel and leave nothing behind.

mod access;
mod analytics;
mod backup;
mod cli;
mod contract;
mod crash;
mod dashboard;
mod deploy;
mod erasure;
mod errors;
mod events;
mod explorer;
mod faults;
mod fhir;
mod hardening;
mod idempotency;
mod identity;
mod idp;
mod keys;
mod network;
mod postgres;
mod privacy;
mod sessions;
mod startup;
mod subscriptions;
mod support;
