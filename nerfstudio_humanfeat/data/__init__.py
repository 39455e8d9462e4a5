"""Human capture data: the catalog, the ZJU-MoCap readers and dataparser, the datamanager."""
