/// The HTTP `Retry-After` header (RFC 9110 section 10.2.3): `delay-seconds` or an
/// `HTTP-date` (section 5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms,
/// which recipients must accept).
enum RetryAfter {
    /// Longest delay represented; anything longer is capped by the retry policy anyway.
    static let longest = Duration.seconds(365 * 86_400)

    /// The wait the header asks for, measured from `nowUnixSeconds`; a date in the past
    /// means no wait. `nil` when the value is neither form.
    static func delay(_ header: String, nowUnixSeconds: Int64) -> Duration? {
        let value = header.trimmingASCIIWhitespace()
        guard !value.isEmpty else { return nil }
        if value.allSatisfy({ $0.isASCII && $0.isNumber }) {
            guard let seconds = Int64(value), seconds <= Int64(longest.components.seconds) else { return longest }
            return .seconds(seconds)
        }
        // The calendar year of `now`, near enough for the two-digit-year rule below.
        let currentYear = 1970 + Int(nowUnixSeconds / 31_556_952)
        guard let date = unixSeconds(ofHTTPDate: value, currentYear: currentYear) else { return nil }
        return .seconds(min(max(date - nowUnixSeconds, 0), longest.components.seconds))
    }

    /// Seconds since the Unix epoch of an HTTP-date, or `nil`.
    static func unixSeconds(ofHTTPDate text: String, currentYear: Int) -> Int64? {
        let tokens = text.split(separator: " ")
        let day: Int
        let month: Int
        var year: Int
        let time: Substring
        switch tokens.count {
        case 6:  // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
            guard tokens[0].hasSuffix(","), shortDayNames.contains(String(tokens[0].dropLast())),
                tokens[5] == "GMT", tokens[1].count == 2, tokens[3].count == 4,
                let parsedDay = number(tokens[1]), let parsedMonth = monthNumber(tokens[2]),
                let parsedYear = number(tokens[3])
            else { return nil }
            (day, month, year, time) = (parsedDay, parsedMonth, parsedYear, tokens[4])
        case 4:  // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
            let date = tokens[1].split(separator: "-", omittingEmptySubsequences: false)
            guard tokens[0].hasSuffix(","), longDayNames.contains(String(tokens[0].dropLast())),
                tokens[3] == "GMT", date.count == 3, date[0].count == 2, date[2].count == 2,
                let parsedDay = number(date[0]), let parsedMonth = monthNumber(date[1]),
                let twoDigitYear = number(date[2])
            else { return nil }
            (day, month, year, time) = (parsedDay, parsedMonth, currentYear / 100 * 100 + twoDigitYear, tokens[2])
            // Section 5.6.7: a two-digit year that appears more than 50 years in the future is
            // the most recent past year with those digits.
            if year > currentYear + 50 { year -= 100 }
        case 5:  // asctime: Sun Nov  6 08:49:37 1994
            guard shortDayNames.contains(String(tokens[0])), let parsedMonth = monthNumber(tokens[1]),
                (1...2).contains(tokens[2].count), tokens[4].count == 4,
                let parsedDay = number(tokens[2]), let parsedYear = number(tokens[4])
            else { return nil }
            (day, month, year, time) = (parsedDay, parsedMonth, parsedYear, tokens[3])
        default:
            return nil
        }
        let clock = time.split(separator: ":", omittingEmptySubsequences: false)
        guard clock.count == 3, clock.allSatisfy({ $0.count == 2 }),
            let hour = number(clock[0]), let minute = number(clock[1]), let second = number(clock[2]),
            hour < 24, minute < 60, second <= 60,
            (1...daysInMonth(month, year: year)).contains(day)
        else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        return Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
    }

    private static let shortDayNames: Set<String> = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    private static let longDayNames: Set<String> = [
        "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
    ]
    private static let monthNames = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]

    private static func monthNumber(_ name: Substring) -> Int? {
        monthNames.firstIndex(of: String(name)).map { $0 + 1 }
    }

    private static func number(_ digits: Substring) -> Int? {
        guard !digits.isEmpty, digits.count <= 4, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    private static func isLeapYear(_ year: Int) -> Bool {
        (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
    }

    private static func daysInMonth(_ month: Int, year: Int) -> Int {
        switch month {
        case 2: isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days from 1970-01-01 to the given proleptic Gregorian date (year >= 1).
    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let previousYears = year - 1
        let daysBeforeYear = previousYears * 365 + previousYears / 4 - previousYears / 100 + previousYears / 400
        let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334]
        let daysBeforeMonth = cumulative[month - 1] + (month > 2 && isLeapYear(year) ? 1 : 0)
        let daysFromYearOneToEpoch = 719_162  // 1969 * 365 + 1969/4 - 1969/100 + 1969/400
        return daysBeforeYear + daysBeforeMonth + day - 1 - daysFromYearOneToEpoch
    }
}
