//! The request pipeline.

pub mod body;
pub mod headers;
pub mod path;
pub mod upstream;
