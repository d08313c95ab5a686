//! `GET /v1/blueprints` (read_task_state): what the served script exposed.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{call, respond};
use crate::server::ApiState;
use crate::server::desk::Op;
use crate::server::error::ApiError;

pub async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    Ok(respond(call(&state, &headers, Op::Blueprints).await?))
}
