//! Identities and the OAuth 2.0 / SMART App Launch 2.x authorization server.
