//! Messages the worker cannot run: poison, unknown tasks and hostile entries get a FAILURE and a
//! dead letter while the worker keeps going (`poison`); bodies that decode into too much and
//! messages restored past their limit are dead-lettered bounded (`bounds`).

mod bounds;
mod poison;
