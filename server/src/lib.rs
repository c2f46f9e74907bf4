//! Strata storage server: the objectstore v1 HTTP API over spawned, panic-isolated,
//! two-tier-limited storage operations.

pub mod app;
pub mod auth;
pub mod backend;
pub mod config;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod object;
pub mod service;
pub mod uploads;
