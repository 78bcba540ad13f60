//! Care teams.
