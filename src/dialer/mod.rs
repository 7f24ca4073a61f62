//! Outbound dialers: schedules, dial strings, imports, the loader and dispatch.
