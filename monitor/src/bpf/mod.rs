//! Loading, attaching and reading the kernel programs.
