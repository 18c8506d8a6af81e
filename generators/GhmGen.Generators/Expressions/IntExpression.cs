using System;
using System.Collections.Generic;

namespace GhmGen.Generators.Expressions;

/// <summary>
/// Evaluates the integer expressions of the description language: literals, names,
/// + - * / % (C# integer semantics), unary minus, parentheses; and argument lists "a = 1, b = c * 2".
/// </summary>
internal static class IntExpression
{
    /// <summary>Evaluates <paramref name="text"/>; returns null and sets <paramref name="error"/> on failure.</summary>
    public static long? Evaluate(string text, IReadOnlyDictionary<string, long> scope, out string? error)
    {
        var parser = new Parser(text, scope);
        try
        {
            long value = parser.ParseExpression();
            parser.SkipSpaces();
            if (!parser.AtEnd) throw new FormatException($"unexpected '{parser.Rest}'");
            error = null;
            return value;
        }
        catch (FormatException e)
        {
            error = e.Message;
            return null;
        }
        catch (DivideByZeroException)
        {
            error = "division by zero";
            return null;
        }
        catch (OverflowException)
        {
            error = "the value overflows";
            return null;
        }
    }

    /// <summary>Splits "a = 1, b = c * 2" into (name, expression) pairs; null on a malformed list.</summary>
    public static List<KeyValuePair<string, string>>? SplitAssignments(string? text, out string? error)
    {
        var result = new List<KeyValuePair<string, string>>();
        error = null;
        if (string.IsNullOrWhiteSpace(text)) return result;
        foreach (string part in SplitTopLevel(text!))
        {
            int eq = part.IndexOf('=');
            string name = (eq < 0 ? part : part.Substring(0, eq)).Trim();
            if (eq < 0 || !IsIdentifier(name) || part.Substring(eq + 1).Trim().Length == 0)
            {
                error = $"'{part.Trim()}' is not of the form 'name = expression'";
                return null;
            }
            result.Add(new KeyValuePair<string, string>(name, part.Substring(eq + 1).Trim()));
        }
        return result;
    }

    /// <summary>Splits a parameter list "a, b = 2" into names and optional default expressions.</summary>
    public static List<KeyValuePair<string, string?>>? SplitParameters(string text, out string? error)
    {
        var result = new List<KeyValuePair<string, string?>>();
        error = null;
        if (string.IsNullOrWhiteSpace(text)) return result;
        foreach (string part in SplitTopLevel(text))
        {
            int eq = part.IndexOf('=');
            string name = (eq < 0 ? part : part.Substring(0, eq)).Trim();
            if (!IsIdentifier(name))
            {
                error = $"'{part.Trim()}' is not a parameter name";
                return null;
            }
            result.Add(new KeyValuePair<string, string?>(name, eq < 0 ? null : part.Substring(eq + 1).Trim()));
        }
        return result;
    }

    /// <summary>Splits a comma-separated list of names.</summary>
    public static List<string> SplitNames(string text)
    {
        var names = new List<string>();
        foreach (string part in text.Split(','))
            if (part.Trim().Length > 0) names.Add(part.Trim());
        return names;
    }

    public static bool IsIdentifier(string s)
    {
        if (s.Length == 0 || !(char.IsLetter(s[0]) || s[0] == '_')) return false;
        foreach (char c in s)
            if (!(char.IsLetterOrDigit(c) || c == '_')) return false;
        return true;
    }

    private static IEnumerable<string> SplitTopLevel(string text)
    {
        int depth = 0, start = 0;
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == '(') depth++;
            else if (text[i] == ')') depth--;
            else if (text[i] == ',' && depth == 0)
            {
                yield return text.Substring(start, i - start);
                start = i + 1;
            }
        }
        yield return text.Substring(start);
    }

    private sealed class Parser(string text, IReadOnlyDictionary<string, long> scope)
    {
        private int _pos;

        public bool AtEnd => _pos >= text.Length;

        public string Rest => text.Substring(_pos);

        public void SkipSpaces()
        {
            while (_pos < text.Length && char.IsWhiteSpace(text[_pos])) _pos++;
        }

        public long ParseExpression()
        {
            long left = ParseTerm();
            while (true)
            {
                SkipSpaces();
                if (Accept('+')) left = checked(left + ParseTerm());
                else if (Accept('-')) left = checked(left - ParseTerm());
                else return left;
            }
        }

        private long ParseTerm()
        {
            long left = ParseUnary();
            while (true)
            {
                SkipSpaces();
                if (Accept('*')) left = checked(left * ParseUnary());
                else if (Accept('/')) left /= ParseUnary();
                else if (Accept('%')) left %= ParseUnary();
                else return left;
            }
        }

        private long ParseUnary()
        {
            SkipSpaces();
            if (Accept('-')) return checked(-ParseUnary());
            if (Accept('+')) return ParseUnary();
            if (Accept('('))
            {
                long inner = ParseExpression();
                SkipSpaces();
                if (!Accept(')')) throw new FormatException("missing ')'");
                return inner;
            }
            int start = _pos;
            if (_pos < text.Length && char.IsDigit(text[_pos]))
            {
                while (_pos < text.Length && char.IsDigit(text[_pos])) _pos++;
                return long.Parse(text.Substring(start, _pos - start), System.Globalization.CultureInfo.InvariantCulture);
            }
            while (_pos < text.Length && (char.IsLetterOrDigit(text[_pos]) || text[_pos] == '_')) _pos++;
            if (_pos == start)
                throw new FormatException(AtEnd ? "the expression ends too early" : $"unexpected '{text[_pos]}'");
            string name = text.Substring(start, _pos - start);
            if (!scope.TryGetValue(name, out long value))
                throw new FormatException($"unknown name '{name}'");
            return value;
        }

        private bool Accept(char c)
        {
            if (_pos < text.Length && text[_pos] == c)
            {
                _pos++;
                return true;
            }
            return false;
        }
    }
}
