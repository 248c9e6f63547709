"""The only layer that talks to the Kubernetes API: observe (API objects -> snapshot), build, apply plans."""
