//! Configuration refusals: bad values, taken addresses and unfit Redis servers stop the binaries
//! at start (`startup`); `.env` files (`envfile`).

mod envfile;
mod startup;
