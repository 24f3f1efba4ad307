//! The governance domain: AIM declarations, DRAG modes, the business rules and the prescriptive-language
//! filter. Pure code: no HTTP, no I/O beyond loading a phrase list.

pub mod filter;
mod mode;
mod request;

pub use mode::{DragMode, DragModeError};
pub use request::{
    is_email, summary, Actor, Aim, GovernanceRequest, IdentityMismatch, Input, InputSource,
    Mission, Rejection, Violation, ViolationKind, MIN_ACTOR_NAME_CHARS,
};
