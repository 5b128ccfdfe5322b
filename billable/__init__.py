"""billable — a detachable billing engine for Django.

Import models from ``billable.models`` and services from ``billable.services``; this root
package deliberately imports nothing from Django so it is safe before the app registry is ready.
"""

__version__ = "0.3.0"

__all__ = ["__version__"]
