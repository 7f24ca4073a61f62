//! Phone number normalisation to E.164.
