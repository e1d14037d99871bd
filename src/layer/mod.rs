//! The tower layer that sends requests for `http://SERVICE/…` to an instance.
