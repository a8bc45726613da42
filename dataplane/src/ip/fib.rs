//! The FIB types the engine uses, from the `vrouter-fib` crate.

pub use vrouter_fib::{
    Fib4, Fib4Config, Fib4Table, Fib6, Fib6Config, Fib6Table, FibError, NO_ROUTE,
};
