pub mod consul_double;
