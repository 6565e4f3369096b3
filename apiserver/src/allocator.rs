//! The process's memory allocator: mimalloc instead of the system's.
//!
//! A create makes about 125 allocations, almost all inside hyper, h2 and tonic (header
//! maps, frames, buffers, boxed futures). glibc's malloc and free were over a fifth of
//! the apiserver's instructions per create; with mimalloc's thread-local heaps the
//! instructions per create fell by 15% (callgrind, the creates benchmark). Declared
//! here because the apiserver binary is this library's only user.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
