"""HTTP only: routes parse requests, call services, and shape responses."""
