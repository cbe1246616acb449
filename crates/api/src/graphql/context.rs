//! What resolvers take from the request's context (the engine, the authenticated caller, the
//! connection's token expiry) and the argument rules every paged field shares.
//!
//! Every other module of the schema reads the context through these, so none needs another
//! resolver module for them.

use std::time::{Duration, SystemTime};

use async_graphql::{Context, Result};
use forlop_domain::text::quote;
use forlop_engine::{Caller, Engine};

use crate::error::{ApiError, ToGql};

/// Largest page of the log one query returns.
pub const MAX_PAGE: usize = 1000;

/// How long a read-your-writes request (`minPosition`, or the HTTP header the transport reads)
/// waits for this node's read model before it is answered `UNAVAILABLE`.
pub(crate) const MIN_POSITION_WAIT: Duration = Duration::from_secs(5);

/// The engine every schema built with one carries (`build_schema(Some(engine))`).
pub fn engine<'a>(ctx: &Context<'a>) -> &'a Engine {
    ctx.data_unchecked::<Engine>()
}

/// The caller the HTTP or WebSocket layer authenticated; there is none in a bare schema.
pub fn caller<'a>(ctx: &Context<'a>) -> Result<&'a Caller> {
    ctx.data_opt::<Caller>().ok_or_else(|| ApiError::Unauthenticated("authentication required".into()).gql())
}

/// The engine and the authenticated caller, as most resolvers need them together.
pub fn engine_and_caller<'a>(ctx: &Context<'a>) -> Result<(&'a Engine, &'a Caller)> {
    Ok((engine(ctx), caller(ctx)?))
}

/// When a connection's token stops being accepted (its `exp` plus the verifier's leeway). Put
/// into a WebSocket connection's data at `connection_init` for the subscriptions to check;
/// absent under `--auth off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenExpiry(pub(crate) SystemTime);

impl TokenExpiry {
    pub(crate) fn passed(self) -> bool {
        SystemTime::now() >= self.0
    }
}

/// The connection's token expiry, refusing the subscription if it has passed already.
pub(crate) fn live_token_expiry(ctx: &Context<'_>) -> Result<Option<TokenExpiry>> {
    let expiry = ctx.data_opt::<TokenExpiry>().copied();
    if expiry.is_some_and(TokenExpiry::passed) {
        return Err(ApiError::Unauthenticated("the connection's token has expired".into()).gql());
    }
    Ok(expiry)
}

/// `first` as a page size: 0 to `MAX_PAGE`.
pub(crate) fn page_size(first: i32) -> Result<usize> {
    if !(0..=MAX_PAGE as i32).contains(&first) {
        return Err(ApiError::invalid(format!("first must be 0 to {MAX_PAGE}")).gql());
    }
    Ok(first as usize)
}

/// A cursor is a log position, as a string.
pub(crate) fn encode_cursor(position: u64) -> String {
    position.to_string()
}

/// The position a client's cursor (`after`) names.
pub(crate) fn decode_cursor(after: Option<&str>) -> Result<Option<u64>> {
    match after {
        None => Ok(None),
        Some(c) => c
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("cursor {} is not a position", quote(c))).gql()),
    }
}
