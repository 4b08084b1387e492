extension Array {
    /// The number of leading elements whose `key` is at most `value`, in an array sorted by
    /// `key`: one past the last element starting at or below an address (0 when none does).
    /// The one binary search behind symbol, kernel symbol and mapping look-ups.
    func countOfElements(withKeyAtMost value: UInt64, key: (Element) -> UInt64) -> Int {
        var low = 0
        var high = count
        while low < high {
            let middle = low + (high - low) / 2
            if key(self[middle]) <= value {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return low
    }
}
