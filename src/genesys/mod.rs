//! The Genesys Cloud client: OAuth, HTTP with retries and a rate limiter, async jobs and the
//! synchronous details query.

pub mod model;
