print("nodeprof")
