//! Loading, attaching and reading the kernel programs.
pub mod btf;
pub mod tracefs;
